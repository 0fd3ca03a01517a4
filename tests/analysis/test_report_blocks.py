"""The report's typed blocks and its two renderers, on hand-made blocks (no sweep)."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from zsltune.analysis.report_blocks import (
    Block,
    BulletList,
    Figure,
    Heading,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)


def _blocks(tmp_path: Path) -> list[Block]:
    png = tmp_path / "r-history.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nnot really a picture")
    return [
        Heading("report <1>", level=1),
        Heading("Best configurations"),
        Paragraph("**Data: synthetic.** a `code` span & <tag>"),
        BulletList(("`trials.parquet`: every trial", "b")),
        Table(pd.DataFrame({"rank": [1, 2], "H": [0.123456, float("nan")], "name": ["a|b", "c"]})),
        Figure(png, "optimisation history"),
    ]


def test_markdown(tmp_path: Path) -> None:
    assert render_markdown(_blocks(tmp_path)) == (
        "# report <1>\n\n"
        "## Best configurations\n\n"
        "**Data: synthetic.** a `code` span & <tag>\n\n"
        "- `trials.parquet`: every trial\n- b\n\n"
        "| rank | H | name |\n|---|---|---|\n| 1 | 0.1235 | a\\|b |\n| 2 |  | c |\n\n"
        "![optimisation history](r-history.png)\n"
    )


def test_html_escapes_marks_and_embeds(tmp_path: Path) -> None:
    blocks = _blocks(tmp_path)
    text = render_html(blocks)
    lines = text.splitlines()
    assert (
        lines[0] == "<!DOCTYPE html>" and "<title>report &lt;1&gt;</title>" in lines[1] and text.endswith("</html>\n")
    )
    assert "<h1>report &lt;1&gt;</h1>" in lines and "<h2>Best configurations</h2>" in lines
    assert "<p><b>Data: synthetic.</b> a <code>code</code> span &amp; &lt;tag&gt;</p>" in lines
    assert "<ul><li><code>trials.parquet</code>: every trial</li><li>b</li></ul>" in lines
    assert "<td>0.1235</td>" in text and "<td></td>" in text
    data = base64.b64encode((tmp_path / "r-history.png").read_bytes()).decode("ascii")
    assert f'<p><img alt="optimisation history" src="data:image/png;base64,{data}"></p>' in lines
    assert "<title>zsltune report</title>" in render_html(blocks[1:])  # no title heading: a generic title


def test_blocks_are_values_not_tuples(tmp_path: Path) -> None:
    blocks = _blocks(tmp_path)
    assert Heading("Best configurations", level=2) in blocks and Heading("Best configurations", level=1) not in blocks
    assert Figure(tmp_path / "r-history.png", "optimisation history") == blocks[5] and hash(blocks[5])
    assert ("h2", "Best configurations") not in blocks  # the old untyped form is gone, not aliased
    table = blocks[4]
    assert isinstance(table, Table) and table == table and table != Table(table.frame.copy())  # by identity
    with pytest.raises(dataclasses.FrozenInstanceError):
        blocks[2].text = "x"  # type: ignore[misc]
    with pytest.raises(TypeError, match="not a report block"):
        render_markdown([("p", "x")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a report block"):
        render_html([Paragraph("x"), ("h2", "x")])  # type: ignore[list-item]
