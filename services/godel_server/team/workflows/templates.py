"""`{{ expr }}` placeholders in task text, evaluated with the safe expression language.

A placeholder ends at the first `}}` outside a quoted string, so `{{ '{{' }}` yields a literal
`{{`. Rendered values: strings as is, null as "", booleans as true/false, numbers as digits,
lists and mappings as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from godel_server.team.workflows.expressions import Expression, ExpressionError, compile_expression, to_text

MAX_RENDERED_LENGTH = 1_000_000


class Template:
    __slots__ = ("_parts", "names", "step_refs", "text")

    def __init__(self, text: str, parts: list[str | Expression]) -> None:
        self.text = text
        self._parts = parts
        self.names = frozenset(n for p in parts if isinstance(p, Expression) for n in p.names)
        self.step_refs = frozenset(s for p in parts if isinstance(p, Expression) for s in p.step_refs)

    @property
    def is_static(self) -> bool:
        return all(isinstance(p, str) for p in self._parts)

    def render(self, variables: Mapping[str, Any]) -> str:
        out: list[str] = []
        size = 0
        for part in self._parts:
            if isinstance(part, Expression):
                try:
                    piece = to_text(part.evaluate(variables))
                except ExpressionError as exc:
                    raise ExpressionError(f"{{{{ {part.text.strip()} }}}}: {exc.message}") from exc
            else:
                piece = part
            size += len(piece)
            if size > MAX_RENDERED_LENGTH:
                raise ExpressionError(f"rendered text is longer than {MAX_RENDERED_LENGTH} characters")
            out.append(piece)
        return "".join(out)


def _closing(text: str, pos: int) -> int:
    """Index of the `}}` closing a placeholder whose body starts at pos, or -1."""
    quote = ""
    while pos < len(text):
        char = text[pos]
        if quote:
            if char == "\\":
                pos += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif text.startswith("}}", pos):
            return pos
        pos += 1
    return -1


def _scan(template: str) -> tuple[list[str | Expression], list[str]]:
    parts: list[str | Expression] = []
    errors: list[str] = []
    pos = 0
    while (start := template.find("{{", pos)) >= 0:
        end = _closing(template, start + 2)
        if end < 0:
            errors.append(f"'{{{{' at offset {start} has no matching '}}}}' (check the quotes inside it)")
            break
        if start > pos:
            parts.append(template[pos:start])
        try:
            parts.append(compile_expression(template[start + 2 : end]))
        except ExpressionError as exc:
            errors.append(f"placeholder at offset {start}: {exc.message}")
        pos = end + 2
    if pos < len(template):
        parts.append(template[pos:])
    return parts, errors


def compile_template(template: str) -> Template:
    """Raises ExpressionError (naming the first problem) when a placeholder is malformed."""
    parts, errors = _scan(template)
    if errors:
        raise ExpressionError(errors[0])
    return Template(template, parts)


def check_template(template: str) -> list[str]:
    """Every problem with the template's placeholders (empty when it is fine)."""
    return _scan(template)[1]


def template_step_refs(template: str) -> set[str]:
    """Step ids the template reads (steps.X / steps['X']); raises ExpressionError when malformed."""
    return set(compile_template(template).step_refs)


def render(template: str, variables: Mapping[str, Any]) -> str:
    return compile_template(template).render(variables)
