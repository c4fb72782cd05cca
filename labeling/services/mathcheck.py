"""The answer-checking child process: reads JSON lines from stdin, writes verdicts to stdout.

It imports no Django: ``labeling.services.grading`` starts it as a plain script, feeds it
``{"id", "gold", "answer"}`` lines and kills it when one check overruns its deadline. That
hard kill is the time limit: math-verify's own timeouts use ``signal.alarm`` (main thread only)
and cannot interrupt a long C-level computation such as a huge integer power.

Protocol: the child prints ``{"ready": true}`` once math-verify is imported, then one
``{"id", "grade", "detail"}`` line per request, in order.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from functools import lru_cache
from typing import Any

_INTEGER = re.compile(r"-?\d+")


def _as_latex(text: str) -> str:
    # math-verify's LaTeX extractor looks for math delimiters; bare answers ("14/3",
    # "\frac{14}{3}") are wrapped so both LaTeX and plain expressions are found.
    return text if "$" in text else f"${text}$"


def quick_verdict(gold: str, answer: str) -> tuple[str, str] | None:
    """A verdict that needs no symbolic work (identical text, two integer literals), or None.

    Cheap enough to run in the caller's process, which skips the round trip to a child.
    """
    gold, answer = gold.strip(), answer.strip()
    if not answer:
        return "incorrect", "no final answer"
    if not gold:
        return "ungradable", "the problem has no ground-truth answer"
    if gold == answer:
        return "correct", ""
    if _INTEGER.fullmatch(gold) and _INTEGER.fullmatch(answer):
        return ("correct" if int(gold) == int(answer) else "incorrect"), ""
    return None


@lru_cache(maxsize=256)
def _parse_gold(gold: str) -> list[Any]:
    # One problem's answers arrive together: its ground truth is parsed once.
    from math_verify import parse

    return list(parse(_as_latex(gold), parsing_timeout=None, raise_on_error=True))


def check(gold: str, answer: str) -> tuple[str, str]:
    """Grade ``answer`` against ``gold``: (``correct|incorrect|ungradable``, detail)."""
    from math_verify import parse, verify

    quick = quick_verdict(gold, answer)
    if quick is not None:
        return quick
    # No in-process timeouts (they need signals); the parent enforces the deadline.
    try:
        gold_parsed = _parse_gold(gold)
    except Exception as exc:
        return "ungradable", f"ground truth could not be parsed: {type(exc).__name__}: {exc}"
    if not gold_parsed:
        return "ungradable", "ground truth could not be parsed"
    try:
        answer_parsed = parse(_as_latex(answer), parsing_timeout=None, raise_on_error=True)
    except Exception as exc:
        return "ungradable", f"answer could not be parsed: {type(exc).__name__}: {exc}"
    if not answer_parsed:
        return "incorrect", "answer could not be parsed"
    try:
        same = verify(gold_parsed, answer_parsed, timeout_seconds=None, raise_on_error=True)
    except Exception as exc:
        return "ungradable", f"comparison failed: {type(exc).__name__}: {exc}"
    return ("correct" if same else "incorrect"), ""


def main() -> None:
    # math-verify warns once per process that its timeouts are off; that is deliberate here.
    logging.disable(logging.WARNING)
    import math_verify  # noqa: F401  (import up front so "ready" means ready to check)

    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        grade, detail = check(request["gold"], request["answer"])
        out.write(json.dumps({"id": request["id"], "grade": grade, "detail": detail[:500]}))
        out.write("\n")
        out.flush()


if __name__ == "__main__":
    main()
