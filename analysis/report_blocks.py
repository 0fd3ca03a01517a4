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

import pandas as pd

from zsltune.analysis.sweepdir import markdown_table


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2  # 1: the report's title, 2: a section


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class BulletList:
    items: tuple[str, ...]


@dataclass(frozen=True, eq=False)  # compared by identity: a DataFrame's == is elementwise, not a bool
class Table:
    frame: pd.DataFrame  # a DataFrame, not rows: both renderers format by column dtype


@dataclass(frozen=True)
class Figure:
    path: Path
    alt: str


Block = Heading | Paragraph | BulletList | Table | Figure


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
