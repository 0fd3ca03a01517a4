"""The report's blocks and its two renderers: a section is a list of blocks, a renderer walks the list.

Five block types cover the report: :class:`Heading`, :class:`Paragraph`, :class:`BulletList`, :class:`Table` (a
DataFrame) and :class:`Figure` (a PNG written beside the report). Text may use two Markdown marks, ``**bold**`` and
backquoted code, which the HTML renderer converts. :func:`render_markdown` links the figures by file name;
:func:`render_html` embeds them, so the HTML file stands alone.
"""

from __future__ import annotations

import base64
import html as _html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from zsltune.analysis.sweepdir import markdown_table


class _TupleView:
    """A block also reads as the tuple ``(kind, *fields)`` of the untyped format it replaces: callers that index
    ``build_report``'s blocks (``b[0] == "img"``, ``("h2", "Pareto front") in blocks``) keep working."""

    def as_tuple(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Any:
        return self.as_tuple()[i]

    def __eq__(self, other: object) -> bool:
        other = other.as_tuple() if isinstance(other, _TupleView) else other
        return isinstance(other, tuple) and self.as_tuple() == other

    def __hash__(self) -> int:
        return hash(self.as_tuple())


@dataclass(frozen=True, eq=False)
class Heading(_TupleView):
    text: str
    level: int = 2  # 1: the report's title, 2: a section

    def as_tuple(self) -> tuple[Any, ...]:
        return (f"h{self.level}", self.text)


@dataclass(frozen=True, eq=False)
class Paragraph(_TupleView):
    text: str

    def as_tuple(self) -> tuple[Any, ...]:
        return ("p", self.text)


@dataclass(frozen=True, eq=False)
class BulletList(_TupleView):
    items: tuple[str, ...]

    def as_tuple(self) -> tuple[Any, ...]:
        return ("list", self.items)


@dataclass(frozen=True, eq=False)
class Table(_TupleView):
    frame: pd.DataFrame  # a DataFrame, not rows: both renderers format by column dtype

    def as_tuple(self) -> tuple[Any, ...]:
        return ("table", self.frame)


@dataclass(frozen=True, eq=False)
class Figure(_TupleView):
    path: Path
    alt: str

    def as_tuple(self) -> tuple[Any, ...]:
        return ("img", self.path, self.alt)


Block = Heading | Paragraph | BulletList | Table | Figure


def from_tuple(old: tuple[Any, ...]) -> Block:
    """The block of an untyped ``(kind, *fields)`` tuple, the form ``ablation.py`` and ``references.py`` return."""
    match old:
        case (("h1" | "h2") as kind, text):
            return Heading(text, level=int(kind[1]))
        case ("p", text):
            return Paragraph(text)
        case ("list", items):
            return BulletList(tuple(items))
        case ("table", frame):
            return Table(frame)
        case ("img", path, alt):
            return Figure(Path(path), alt)
    raise ValueError(f"not a report block: {old!r}")


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as one Markdown document; figures linked by file name (they sit beside it)."""
    return "\n\n".join(_markdown(b) for b in blocks) + "\n"


def _markdown(block: Block) -> str:
    match block:
        case Heading(text, level):
            return f"{'#' * level} {text}"
        case Paragraph(text):
            return text
        case BulletList(items):
            return "\n".join(f"- {x}" for x in items)
        case Table(frame):
            return markdown_table(frame)
        case Figure(path, alt):
            return f"![{alt}]({path.name})"
    raise TypeError(f"not a report block: {block!r}")


#: the page's style: narrow text column, bordered compact tables, figures no wider than the page
_STYLE = (
    "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
    "table{border-collapse:collapse;font-size:0.9em;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
    "img{max-width:100%}</style>"
)


def render_html(blocks: Sequence[Block]) -> str:
    """The blocks as one self-contained HTML page: the figures embedded as base64 PNG."""
    title = next((b.text for b in blocks if isinstance(b, Heading) and b.level == 1), "zsltune report")
    parts = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{_html.escape(title)}</title>',
        f"{_STYLE}</head><body>",
        *(_html_block(b) for b in blocks),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Paragraph text to HTML: escaped, then the two Markdown marks the report uses (bold, code)."""
    t = _html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _html_block(block: Block) -> str:
    match block:
        case Heading(text, level):
            return f"<h{level}>{_html.escape(text)}</h{level}>"
        case Paragraph(text):
            return f"<p>{_inline(text)}</p>"
        case BulletList(items):
            return "<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in items) + "</ul>"
        case Table(frame):
            return frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
        case Figure(path, alt):
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return f'<p><img alt="{_html.escape(alt)}" src="data:image/png;base64,{data}"></p>'
    raise TypeError(f"not a report block: {block!r}")
