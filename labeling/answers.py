"""Final answers in solution text: the PRM800K ``# Answer`` trailer and a light normal form.

Plain Python with no Django imports: the simulation's pool loaders (which run outside Django)
use it as well as the importers, the grader and the evaluator.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ANSWER_MARKER = "# Answer"

_NOISE = re.compile(r"\\[,;!: ]|\\left|\\right|\$|\s+")
_BOXED = "\\boxed{"


def answer_extract(steps: Sequence[str]) -> str:
    """The final answer: the text after ``# Answer`` in the last step ("" when there is none)."""
    if not steps:
        return ""
    last = steps[-1]
    at = last.rfind(ANSWER_MARKER)
    if at < 0:
        return ""
    return last[at + len(ANSWER_MARKER) :].strip()


def answer_normalize(text: str) -> str:
    """A cheap normal form, for merging answers before (or without) math-verify: no spacing,
    no ``$``, no ``\\left``/``\\right``, and one enclosing ``\\boxed{…}`` unwrapped."""
    text = _NOISE.sub("", text or "")
    if text.startswith(_BOXED) and text.endswith("}"):
        text = text[len(_BOXED) : -1]
    return text
