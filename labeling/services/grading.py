"""Grade candidates' final answers against the ground truth with HuggingFace math-verify.

Each distinct (problem, final answer) pair is checked once and cached in ``GradedAnswer``;
``Solution.grade`` is then set with one set-based UPDATE per chunk of problems. Checks run in
child processes (``mathcheck.py``) under a hard per-answer deadline, so a pathological answer
(``2^{2^{2^{2^{2^{2}}}}}``) comes back ``ungradable`` instead of hanging the importer or the
Celery worker. Never call this from a web request: the admin enqueues ``labeling.grade_solutions``.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Subquery

from labeling.models import Grade, GradedAnswer, Problem, Solution, text_sha256
from labeling.services.mathcheck import quick_verdict

_CHECKER_SCRIPT = Path(__file__).with_name("mathcheck.py")
_STARTUP_TIMEOUT_SECONDS = 120.0  # importing sympy on a loaded machine can take a while
_PROBLEM_CHUNK = 500

Progress = Callable[[int], object]  # e.g. tqdm.update


def answer_hash(answer: str) -> str:
    return text_sha256(answer)


@dataclass
class GradingReport:
    pairs_checked: int = 0  # distinct (problem, answer) pairs sent to math-verify
    pairs_cached: int = 0  # pairs already in GradedAnswer: not checked again
    solutions_graded: int = 0
    by_grade: dict[str, int] = field(default_factory=dict)  # of the pairs checked now
    seconds: float = 0.0

    def summary(self) -> str:
        grades = ", ".join(f"{k} {v}" for k, v in sorted(self.by_grade.items())) or "none"
        return (
            f"graded {self.solutions_graded} solutions: {self.pairs_checked} distinct answers "
            f"checked ({grades}), {self.pairs_cached} from cache, in {self.seconds:.1f}s"
        )


class _Child:
    """One checker process and its line-buffered stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(_CHECKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self.buffer = b""
        self.ready = False
        self.key: Any = None  # the item being checked, None when idle
        self.deadline = time.monotonic() + _STARTUP_TIMEOUT_SECONDS

    @property
    def fd(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def send(self, request_id: int, gold: str, answer: str, deadline: float) -> None:
        assert self.proc.stdin is not None
        line = json.dumps({"id": request_id, "gold": gold, "answer": answer}) + "\n"
        self.proc.stdin.write(line.encode())
        self.deadline = deadline

    def read_messages(self) -> list[dict[str, Any]] | None:
        """Messages now available; None when the process has gone away."""
        data = os.read(self.fd, 1 << 16)
        if not data:
            return None
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class AnswerChecker:
    """A small pool of math-verify processes with a hard deadline per answer.

    ``check_many`` yields ``(key, grade, detail)`` for each ``(key, gold, answer)`` in
    completion order. A check that overruns ``timeout`` seconds has its process killed and
    replaced, and comes back ``ungradable``. ``calls`` counts the checks performed.
    """

    def __init__(self, *, timeout: float | None = None, workers: int | None = None) -> None:
        self.timeout = float(settings.GRADING_TIMEOUT_SECONDS if timeout is None else timeout)
        self.workers = workers or max(1, min(2, os.cpu_count() or 1))
        self.calls = 0
        self._children: list[_Child] = []
        self._selector = selectors.DefaultSelector()
        self._next_id = 0

    def __enter__(self) -> AnswerChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for child in self._children:
            self._selector.unregister(child.fd)
            child.kill()
        self._children.clear()
        self._selector.close()

    def _spawn(self) -> _Child:
        child = _Child()
        self._children.append(child)
        self._selector.register(child.fd, selectors.EVENT_READ, child)
        return child

    def _replace(self, child: _Child) -> None:
        self._selector.unregister(child.fd)
        self._children.remove(child)
        child.kill()
        self._spawn()

    def check(self, gold: str, answer: str) -> tuple[str, str]:
        ((_, grade, detail),) = self.check_many([(None, gold, answer)])
        return grade, detail

    def check_many(self, items: Iterable[tuple[Any, str, str]]) -> Iterator[tuple[Any, str, str]]:
        try:
            yield from self._run(iter(items))
        finally:
            # A consumer that stops early leaves checks in flight: drop those processes so
            # their late answers cannot be mistaken for the next call's.
            for child in [c for c in self._children if c.key is not None]:
                self._replace(child)

    def _run(self, pending: Iterator[tuple[Any, str, str]]) -> Iterator[tuple[Any, str, str]]:
        exhausted = False
        waiting_item: tuple[Any, str, str] | None = None  # needs a child, none idle yet
        while True:
            # Feed idle children; answers that need no symbolic check are answered here.
            while True:
                if waiting_item is None:
                    item = None if exhausted else next(pending, None)
                    if item is None:
                        exhausted = True
                        break
                    self.calls += 1
                    quick = quick_verdict(item[1], item[2])
                    if quick is not None:
                        yield item[0], *quick
                        continue
                    waiting_item = item
                    # Processes start lazily: a run of quick verdicts needs none.
                    if len(self._children) < self.workers:
                        self._spawn()
                idle = next((c for c in self._children if c.ready and c.key is None), None)
                if idle is None:
                    break
                key, gold, answer = waiting_item
                self._next_id += 1
                idle.key = (self._next_id, key)
                idle.send(self._next_id, gold, answer, time.monotonic() + self.timeout)
                waiting_item = None
            busy = [c for c in self._children if c.key is not None]
            if exhausted and waiting_item is None and not busy:
                return
            waiting = [c for c in self._children if c.key is not None or not c.ready]
            wait = max(0.0, min(c.deadline for c in waiting) - time.monotonic())
            for selector_key, _ in self._selector.select(timeout=wait):
                child = selector_key.data
                messages = child.read_messages()
                if messages is None:  # the process died: the answer it held is ungradable
                    if child.key is not None:
                        yield child.key[1], Grade.UNGRADABLE.value, "the checker process died"
                    elif not child.ready:
                        raise RuntimeError("the math-verify checker process failed to start")
                    self._replace(child)
                    continue
                for message in messages:
                    if message.get("ready"):
                        child.ready = True
                    elif child.key is not None and message["id"] == child.key[0]:
                        yield child.key[1], message["grade"], message["detail"]
                        child.key = None
            now = time.monotonic()
            for child in list(self._children):
                if child.deadline > now:
                    continue
                if child.key is not None:
                    detail = f"timed out after {self.timeout:g}s"
                    yield child.key[1], Grade.UNGRADABLE.value, detail
                    self._replace(child)
                elif not child.ready:
                    raise RuntimeError(
                        f"the math-verify checker did not start in {_STARTUP_TIMEOUT_SECONDS:g}s"
                    )


def ungraded_solutions_count(*, problem_ids: Iterable[int] | None = None) -> int:
    qs = Solution.objects.filter(grade=Grade.UNGRADED)
    if problem_ids is not None:
        qs = qs.filter(problem_id__in=list(problem_ids))
    return qs.count()


def _problem_chunks(problem_ids: Iterable[int] | None) -> Iterator[list[int]]:
    """Ids of problems with ungraded solutions, in keyset-paginated chunks."""
    wanted = sorted(set(problem_ids)) if problem_ids is not None else None
    last = 0
    while True:
        qs = Problem.objects.filter(
            id__gt=last,
            pk__in=Solution.objects.filter(grade=Grade.UNGRADED).values("problem_id"),
        )
        if wanted is not None:
            qs = qs.filter(id__in=[i for i in wanted if i > last][:_PROBLEM_CHUNK])
        chunk = list(qs.order_by("id").values_list("id", flat=True)[:_PROBLEM_CHUNK])
        if not chunk:
            return
        yield chunk
        last = chunk[-1]


def answers_grade(
    *,
    problem_ids: Iterable[int] | None = None,
    progress: Progress | None = None,
    timeout: float | None = None,
    checker: AnswerChecker | None = None,
) -> GradingReport:
    """Grade every ungraded solution (of ``problem_ids``, or all); returns what it did.

    ``progress`` is called with the number of solutions each checked or cached answer covers.
    Safe to run concurrently with itself: the cache insert ignores pairs another run stored.
    """
    started = time.monotonic()
    report = GradingReport()
    owns_checker = checker is None
    active = checker or AnswerChecker(timeout=timeout)
    try:
        for chunk in _problem_chunks(problem_ids):
            _grade_chunk(chunk, active, report, progress)
    finally:
        if owns_checker:
            active.close()
    report.seconds = time.monotonic() - started
    return report


def _grade_chunk(
    chunk: list[int], checker: AnswerChecker, report: GradingReport, progress: Progress | None
) -> None:
    pairs = (
        Solution.objects.filter(problem_id__in=chunk, grade=Grade.UNGRADED)
        .values_list("problem_id", "answer")
        .annotate(n=Count("id"))
        .order_by()
    )
    cached = set(
        GradedAnswer.objects.filter(problem_id__in=chunk).values_list("problem_id", "answer_hash")
    )
    gold = dict(Problem.objects.filter(id__in=chunk).values_list("id", "answer"))
    to_check: list[tuple[tuple[int, str, int], str, str]] = []
    for problem_id, answer, n in pairs:
        if (problem_id, answer_hash(answer)) in cached:
            report.pairs_cached += 1
            if progress:
                progress(n)
        else:
            to_check.append(((problem_id, answer, n), gold[problem_id], answer))

    results: list[GradedAnswer] = []
    for (problem_id, answer, n), grade, detail in checker.check_many(to_check):
        results.append(
            GradedAnswer(
                problem_id=problem_id,
                answer_hash=answer_hash(answer),
                answer=answer,
                grade=grade,
                detail=detail,
            )
        )
        report.pairs_checked += 1
        report.by_grade[grade] = report.by_grade.get(grade, 0) + 1
        if progress:
            progress(n)
    GradedAnswer.objects.bulk_create(results, batch_size=1000, ignore_conflicts=True)

    graded = GradedAnswer.objects.filter(
        problem_id=OuterRef("problem_id"), answer=OuterRef("answer")
    )
    report.solutions_graded += (
        Solution.objects.filter(problem_id__in=chunk, grade=Grade.UNGRADED)
        .filter(Exists(graded))
        .update(grade=Subquery(graded.values("grade")[:1]))
    )


def problem_grades_reset(*, problem_ids: Iterable[int]) -> int:
    """Forget cached grades of problems whose ground truth changed; returns solutions reset."""
    ids = list(problem_ids)
    if not ids:
        return 0
    GradedAnswer.objects.filter(problem_id__in=ids).delete()
    return (
        Solution.objects.filter(problem_id__in=ids)
        .exclude(grade=Grade.UNGRADED)
        .update(grade=Grade.UNGRADED)
    )
