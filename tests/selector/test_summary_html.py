"""summary.md as HTML: the runner's Markdown subset, with every character of the text escaped."""

from selector.services.simulation import ratio_in_words
from selector.summary_html import summary_html


def test_headings_paragraphs_tables_and_inline_marks_render():
    text = (
        "# Active-learning simulation\n\nPreset `test`, pool\n`x`.\n\n**Data:** 1.9x.\n\n"
        "| arm | labels |\n| --- | ---: |\n| 80_20 | 12 |\n"
    )
    out = summary_html(text)
    assert "<h3>Active-learning simulation</h3>" in out
    assert "<p>Preset <code>test</code>, pool <code>x</code>.</p>" in out
    assert "<strong>Data:</strong> 1.9x." in out
    assert "<th>arm</th><th>labels</th>" in out and "<td>80_20</td><td>12</td>" in out
    assert "---" not in out


def test_markup_in_the_text_is_escaped():
    out = summary_html("# <script>alert(1)</script>\n\n| <img src=x onerror=y> | a |\n|---|---|\n")
    assert "<script>" not in out and "<img" not in out
    assert "&lt;script&gt;" in out and "&lt;img src=x onerror=y&gt;" in out


def test_the_ratio_reads_as_a_sentence():
    de = {"ratio": 1.9, "arms": ["80_20", "uniform"]}
    assert ratio_in_words(de).startswith("80/20 reached uniform's quality with 1/1.9 of the labels")
    low = ratio_in_words({"ratio": 0.18, "arms": ["80_20", "uniform"]})
    assert low.startswith("80/20 needed 5.6 times the labels uniform did")
    assert ratio_in_words({"ratio": float("nan")}).startswith("No ratio")
