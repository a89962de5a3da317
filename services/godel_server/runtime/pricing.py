"""Token usage to dollars: a per-model price table (USD per million tokens)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from godel_server.runtime.config import ConfigError

# (prompt, completion) USD per 1M tokens; override or extend with GODEL_MODEL_PRICES.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "o3": (2.00, 8.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "kimi-k2.5": (0.60, 2.50),
}
# Models missing from the table are priced like this.
FALLBACK_PRICE = (1.00, 3.00)


@dataclass(frozen=True)
class PriceTable:
    prices: dict[str, tuple[float, float]]

    @classmethod
    def from_setting(cls, raw: str) -> PriceTable:
        prices = dict(DEFAULT_PRICES)
        if raw:
            try:
                extra = json.loads(raw)
                for model, pair in extra.items():
                    prompt, completion = (float(x) for x in pair)
                    prices[str(model)] = (prompt, completion)
            except (ValueError, TypeError, AttributeError) as exc:
                raise ConfigError(
                    'GODEL_MODEL_PRICES must be JSON like {"model": [prompt_usd_per_1m, completion_usd_per_1m]}'
                ) from exc
        return cls(prices)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        prompt, completion = self.prices.get(model, FALLBACK_PRICE)
        return (prompt_tokens * prompt + completion_tokens * completion) / 1_000_000
