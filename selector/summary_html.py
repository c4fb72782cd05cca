"""The simulation's summary.md as HTML: the small subset of Markdown the runner writes
(headings, paragraphs, pipe tables, ``**bold**`` and ```code```), every character of the text
escaped first, so nothing in the file can inject markup. No Markdown library needed."""

from __future__ import annotations

import html
import re

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_ALIGN_ROW = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=True)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    head, *body = lines
    rows = [line for line in body if not _ALIGN_ROW.match(line.strip())]
    out = ['<table class="selector-metrics"><thead><tr>']
    out += [f"<th>{_inline(cell)}</th>" for cell in _cells(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in _cells(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def summary_html(markdown: str) -> str:
    """HTML for ``markdown`` (summary.md's subset). Headings start at ``<h3>`` so they sit
    under the job page's own headings."""
    blocks: list[str] = []
    paragraph: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if table:
            blocks.append(_table(table))
            table.clear()

    for raw in markdown.splitlines():
        line = raw.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if not line:
            flush()
        elif line.startswith("|"):
            if paragraph:
                flush()
            table.append(line)
        elif heading:
            flush()
            level = min(6, len(heading[1]) + 2)
            blocks.append(f"<h{level}>{_inline(heading[2])}</h{level}>")
        else:
            if table:
                flush()
            paragraph.append(line)
    flush()
    return "\n".join(blocks)
