"""The demo's content: original problems with candidate solutions, read from ``problems.json``.

Every problem, reference solution and candidate there was written for Stepwise (none is taken
from MATH or PRM800K). Each candidate knows whether it is right and, if not, the index of its
first wrong step, so tests can check that the grader agrees and the demo queue is realistic.
The file gives a candidate's steps without PRM800K's ``# Answer`` trailer and its answer
apart; the trailer is added here. ``demo.seed`` loads it all into the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling.answers import ANSWER_MARKER

_DATA = Path(__file__).with_name("problems.json")


@dataclass(frozen=True)
class DemoCandidate:
    steps: tuple[str, ...]  # the last step ends with "# Answer\n\n<answer>"
    answer: str
    error_step: int | None  # index of the first wrong step; None for a correct solution

    @property
    def is_correct(self) -> bool:
        return self.error_step is None


@dataclass(frozen=True)
class DemoProblem:
    unique_id: str
    subject: str
    level: int
    problem: str
    solution: str
    answer: str
    candidates: tuple[DemoCandidate, ...]


def _candidate(record: dict[str, Any]) -> DemoCandidate:
    *body, last = record["steps"]
    final = f"{last}\n\n{ANSWER_MARKER}\n\n{record['answer']}"
    return DemoCandidate(
        steps=(*body, final), answer=record["answer"], error_step=record["error_step"]
    )


def _problems() -> tuple[DemoProblem, ...]:
    records = json.loads(_DATA.read_text(encoding="utf-8"))
    return tuple(
        DemoProblem(
            unique_id=r["unique_id"],
            subject=r["subject"],
            level=r["level"],
            problem=r["problem"],
            solution=r["solution"],
            answer=r["answer"],
            candidates=tuple(_candidate(c) for c in r["candidates"]),
        )
        for r in records
    )


DEMO_PROBLEMS: tuple[DemoProblem, ...] = _problems()


def demo_candidate_count() -> int:
    return sum(len(p.candidates) for p in DEMO_PROBLEMS)
