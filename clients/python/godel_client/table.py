"""Plain-text tables: aligned columns for lists, aligned key/value pairs for one record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ELLIPSIS = "…"
GAP = "  "


def one_line(text: str) -> str:
    """Collapses runs of whitespace (newlines included) into single spaces."""
    return " ".join(text.split())


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when it was cut."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 1] + ELLIPSIS


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    max_widths: Mapping[int, int] | None = None,
) -> str:
    """Columns padded to their widest cell; ``max_widths`` (column index -> width) truncates cells.

    The last column is not padded, so lines carry no trailing spaces.
    """
    limits = max_widths or {}
    cells = [
        [truncate(one_line(cell), limits[i]) if i in limits else one_line(cell) for i, cell in enumerate(row)]
        for row in rows
    ]
    widths = [len(h) for h in headers]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, table has {len(headers)} columns")
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [_line(headers, widths)]
    lines.extend(_line(row, widths) for row in cells)
    return "\n".join(lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths[:-1], strict=True)]
    return GAP.join([*padded, cells[-1]]).rstrip()


def render_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """``key  value`` lines with the values aligned; continuation lines of a value are indented."""
    if not pairs:
        return ""
    width = max(len(key) for key, _ in pairs)
    lines: list[str] = []
    for key, value in pairs:
        first, *rest = value.splitlines() or [""]
        lines.append(f"{key.ljust(width)}{GAP}{first}".rstrip())
        lines.extend(f"{' ' * width}{GAP}{more}".rstrip() for more in rest)
    return "\n".join(lines)
