"""Candidate pools with known step labels: a synthetic generator and loaders for real files.

A pool is a list of :class:`PoolProblem`, each with many :class:`PoolCandidate` whose per-step
ratings are known (the truth the oracle answers from). Nothing here imports Django.

Synthetic difficulty (fixed before any measurement; see ``SYNTH`` and the README section
"Simulating active learning"). A problem is a chain of 3 to 8 integer operations on a start
value. Its level (1..5, uniform) sets the chance that a candidate is fully correct:
70%, 55%, 40%, 25%, 10%. A flawed candidate has exactly one error, of a type drawn uniformly
from ``ERROR_TYPES`` at a step drawn uniformly among the operations:

- ``arithmetic_slip``: the step's result is off by 1..3; later steps continue from it;
- ``sign_error``: an addition is done as a subtraction (or the reverse); later steps continue;
- ``wrong_rule``: the step multiplies where the problem says add/subtract (or adds where it
  says multiply); later steps continue;
- ``wrong_final``: every step is right but the ``# Answer`` line reports another number;
- ``wrong_step_right_answer``: the step writes a wrong result, but the next step carries on
  from the right value, so the final answer is still correct (the grader cannot see it).

Each operation step is written in one of three phrasings (one, "Adding $k$ gives $b$.", leaves
out the value it starts from). Every candidate also has, with probability 15%, one neutral
step (a re-reading remark, rated 0) inserted before a random operation. Steps are rated +1 up
to the first error, -1 there, and carry no rating after it (phase-2 labelers stop at the first
error).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labeling.answers import ANSWER_MARKER, answer_extract, answer_normalize

ERROR_TYPES = (
    "arithmetic_slip",
    "sign_error",
    "wrong_rule",
    "wrong_final",
    "wrong_step_right_answer",
)


@dataclass(frozen=True)
class SynthParams:
    """The synthetic pool's difficulty. Fixed: changing it invalidates every stored figure."""

    min_ops: int = 3
    max_ops: int = 8
    p_correct_by_level: tuple[float, ...] = (0.70, 0.55, 0.40, 0.25, 0.10)
    p_neutral_step: float = 0.15
    max_slip: int = 3
    start: tuple[int, int] = (2, 30)
    add_max: int = 40  # add/subtract k in 1..add_max
    mul_max: int = 9  # multiply by k in 2..mul_max


SYNTH = SynthParams()
# The ci preset's pool (issue 15, fixed before any arm was measured): the same error types
# and phrasings on shorter chains of small operands, so that a step's check is learnable by a
# CPU-size model. ``synthetic`` keeps ``SYNTH``.
SYNTH_SMALL = SynthParams(min_ops=2, max_ops=4, start=(1, 9), add_max=9, mul_max=3)
SYNTH_KINDS = {"synthetic": SYNTH, "synthetic-small": SYNTH_SMALL}


class PoolError(ValueError):
    """A pool file cannot be read; the message names the line and the field."""


@dataclass(frozen=True)
class PoolCandidate:
    steps: tuple[str, ...]
    answer: str
    # True/False when known; None lets the runner grade the answer with the product's grader.
    correct: bool | None
    # The known rating of each step: -1/0/+1 up to and including the first -1, None after it
    # (or where the source does not say).
    ratings: tuple[int | None, ...]
    error_type: str | None = None

    @property
    def first_error(self) -> int | None:
        return next((i for i, r in enumerate(self.ratings) if r == -1), None)


@dataclass(frozen=True)
class PoolProblem:
    key: str
    problem: str
    answer: str
    candidates: tuple[PoolCandidate, ...] = field(default_factory=tuple)


# --- The synthetic generator ------------------------------------------------------------------

_OPS = ("add", "sub", "mul")
_NEUTRAL = (
    "Let me re-read the list of operations before going on.",
    "I keep the current value in mind and look at the next operation.",
    "So far so good; the next operation comes now.",
)


def _apply(op: str, a: int, k: int) -> int:
    return a + k if op == "add" else a - k if op == "sub" else a * k


def _step_text(op: str, a: int, k: int, b: int, variant: int) -> str:
    symbol = {"add": "+", "sub": "-", "mul": "\\times"}[op]
    verb = {"add": "Adding", "sub": "Subtracting", "mul": "Multiplying by"}[op]
    return (
        f"${a} {symbol} {k} = {b}$.",
        f"Now ${a} {symbol} {k} = {b}$.",
        f"{verb} ${k}$ gives ${b}$.",
    )[variant]


def _problem_text(start: int, ops: list[tuple[str, int]]) -> str:
    words = {"add": "add {k}", "sub": "subtract {k}", "mul": "multiply by {k}"}
    listed = ", then ".join(words[op].format(k=k) for op, k in ops)
    return f"Start with ${start}$, {listed}. What is the result?"


def _candidate(
    rng: random.Random,
    start: int,
    ops: list[tuple[str, int]],
    *,
    error_type: str | None,
    params: SynthParams,
) -> PoolCandidate:
    n = len(ops)
    error_at = rng.randrange(n) if error_type not in (None, "wrong_final") else None
    if error_type == "wrong_step_right_answer" and error_at == n - 1:
        error_at = rng.randrange(n - 1)  # the next step must exist to carry on correctly
    steps: list[str] = [f"We start from ${start}$ and apply the operations in order."]
    ratings: list[int | None] = [1]
    value = start
    neutral_before = rng.randrange(n) if rng.random() < params.p_neutral_step else None
    for i, (op, k) in enumerate(ops):
        if neutral_before == i:
            steps.append(rng.choice(_NEUTRAL))
            ratings.append(0)
        right = _apply(op, value, k)
        shown_op, result = op, right
        wrong = i == error_at
        if wrong and error_type == "arithmetic_slip":
            result = right + rng.choice([-1, 1]) * rng.randint(1, params.max_slip)
        elif wrong and error_type == "sign_error":
            # The right operation is written, but k enters with the wrong sign.
            result = {"add": value - k, "sub": value + k, "mul": -right}[op]
        elif wrong and error_type == "wrong_rule":
            shown_op = "add" if op == "mul" else "mul"
            result = _apply(shown_op, value, k)
        elif wrong and error_type == "wrong_step_right_answer":
            result = right + rng.choice([-1, 1]) * rng.randint(1, params.max_slip)
        if result == right and wrong:
            result = right + 1  # e.g. 2 + 2 = 2 * 2: make the error visible
        steps.append(_step_text(shown_op, value, k, result, rng.randrange(3)))
        ratings.append(-1 if wrong else 1)
        # A right-answer error carries on from the true value, the others from their mistake.
        value = right if error_type == "wrong_step_right_answer" else result
    final = value
    if error_type == "wrong_final":
        final = value + rng.choice([-1, 1]) * rng.randint(1, 10)
    steps.append(f"The result is ${final}$.\n\n{ANSWER_MARKER}\n\n{final}")
    ratings.append(-1 if error_type == "wrong_final" else 1)
    first = next((i for i, r in enumerate(ratings) if r == -1), None)
    if first is not None:
        ratings = ratings[: first + 1] + [None] * (len(ratings) - first - 1)
    true_answer = start
    for op, k in ops:
        true_answer = _apply(op, true_answer, k)
    return PoolCandidate(
        steps=tuple(steps),
        answer=str(final),
        correct=final == true_answer,
        ratings=tuple(ratings),
        error_type=error_type,
    )


def synthetic_pool(
    *, problems: int, candidates: int, seed: int, params: SynthParams = SYNTH
) -> list[PoolProblem]:
    """``problems`` problems with ``candidates`` candidates each; depends only on the seed.

    Candidates of one problem may repeat a text (a likely solution is sampled often, as with a
    real generator); the runner keeps one copy, as the importer does.
    """
    out: list[PoolProblem] = []
    for index in range(problems):
        rng = random.Random(f"stepwise-sim:{seed}:{index}")
        n_ops = rng.randint(params.min_ops, params.max_ops)
        start = rng.randint(*params.start)
        ops = [
            (op, rng.randint(2, params.mul_max) if op == "mul" else rng.randint(1, params.add_max))
            for op in (rng.choice(_OPS) for _ in range(n_ops))
        ]
        level = rng.randint(1, 5)
        p_correct = params.p_correct_by_level[level - 1]
        cands = [
            _candidate(
                rng,
                start,
                ops,
                error_type=None if rng.random() < p_correct else rng.choice(ERROR_TYPES),
                params=params,
            )
            for _ in range(candidates)
        ]
        answer = start
        for op, k in ops:
            answer = _apply(op, answer, k)
        out.append(
            PoolProblem(
                key=f"sim/level{level}/{seed}-{index}",
                problem=_problem_text(start, ops),
                answer=str(answer),
                candidates=tuple(cands),
            )
        )
    return out


def synthetic_correct_solutions(
    *, problems: int, seed: int, params: SynthParams = SYNTH
) -> list[tuple[str, list[str]]]:
    """Unlabeled text for pretraining: one correct solution of each of ``problems`` fresh
    problems (a seed namespace apart from the pools'), as (problem, steps)."""
    out: list[tuple[str, list[str]]] = []
    for index in range(problems):
        rng = random.Random(f"stepwise-sim-pretrain:{seed}:{index}")
        n_ops = rng.randint(params.min_ops, params.max_ops)
        start = rng.randint(*params.start)
        ops = [
            (op, rng.randint(2, params.mul_max) if op == "mul" else rng.randint(1, params.add_max))
            for op in (rng.choice(_OPS) for _ in range(n_ops))
        ]
        cand = _candidate(rng, start, ops, error_type=None, params=params)
        out.append((_problem_text(start, ops), list(cand.steps)))
    return out


# --- Loaders ------------------------------------------------------------------------------------


def answer_from_steps(steps: Iterable[str]) -> str:
    """The ``# Answer`` trailer's text, else the last step's last ``\\boxed{…}``."""
    listed = list(steps)
    last = listed[-1] if listed else ""
    if ANSWER_MARKER in last:
        return answer_extract(listed)
    boxed = re.findall(r"\\boxed\{([^{}]*)\}", last)
    return boxed[-1] if boxed else ""


def _ratings_from_first_error(n_steps: int, first: int | None) -> tuple[int | None, ...]:
    if first is None:
        return tuple([1] * n_steps)
    return tuple([1] * first + [-1] + [None] * (n_steps - first - 1))


def _phase2_ratings(ratings: list[int | None]) -> tuple[int | None, ...]:
    """Cut known ratings after the first -1 (phase-2 semantics)."""
    out: list[int | None] = []
    for r in ratings:
        out.append(r)
        if r == -1:
            break
    return tuple(out + [None] * (len(ratings) - len(out)))


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PoolError(f"{path.name} line {number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise PoolError(f"{path.name} line {number}: expected an object")
            yield number, record


def _field(record: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise PoolError(f"{where}: field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def pool_load_jsonl(path: str | Path) -> list[PoolProblem]:
    """The documented pool format: one problem a line::

        {"id": "optional key", "problem": str, "answer": str,
         "candidates": [{"steps": [str, ...], "answer": "optional, else after # Answer",
                         "correct": optional bool,
                         "first_wrong_step": int | null   (0-based)  -- or --
                         "ratings": [-1|0|1|null, ...]}]}

    ``correct`` absent: the runner grades the answer with the product's grader.
    """
    path = Path(path)
    problems: list[PoolProblem] = []
    for number, record in _read_jsonl(path):
        where = f"{path.name} line {number}"
        text = _field(record, "problem", str, where)
        answer = _field(record, "answer", str, where)
        raw = _field(record, "candidates", list, where)
        cands: list[PoolCandidate] = []
        for j, cand in enumerate(raw):
            cw = f"{where} candidates[{j}]"
            if not isinstance(cand, dict):
                raise PoolError(f"{cw}: expected an object")
            steps = _field(cand, "steps", list, cw)
            if not steps or not all(isinstance(s, str) and s.strip() for s in steps):
                raise PoolError(f"{cw}: field 'steps' must be a non-empty list of strings")
            if "ratings" in cand:
                ratings = _field(cand, "ratings", list, cw)
                if len(ratings) != len(steps) or any(
                    r is not None and (isinstance(r, bool) or r not in (-1, 0, 1)) for r in ratings
                ):
                    raise PoolError(
                        f"{cw}: field 'ratings' must have one of -1, 0, 1, null per step"
                    )
                known = _phase2_ratings(ratings)
            elif "first_wrong_step" in cand:
                first = cand["first_wrong_step"]
                if first is not None and (
                    isinstance(first, bool)
                    or not isinstance(first, int)
                    or not 0 <= first < len(steps)
                ):
                    raise PoolError(
                        f"{cw}: field 'first_wrong_step' must be null or 0..{len(steps) - 1}"
                    )
                known = _ratings_from_first_error(len(steps), first)
            else:
                raise PoolError(f"{cw}: give 'ratings' or 'first_wrong_step'")
            correct = cand.get("correct")
            if correct is not None and not isinstance(correct, bool):
                raise PoolError(f"{cw}: field 'correct' must be true, false or absent")
            cand_answer = cand.get("answer")
            if cand_answer is None:
                cand_answer = answer_from_steps(steps)
            cands.append(
                PoolCandidate(
                    steps=tuple(steps), answer=str(cand_answer), correct=correct, ratings=known
                )
            )
        key = str(record.get("id") or f"{path.stem}/{number}")
        problems.append(PoolProblem(key=key, problem=text, answer=answer, candidates=tuple(cands)))
    if not problems:
        raise PoolError(f"{path.name}: no problems")
    return problems


def pool_load_prm800k(path: str | Path) -> list[PoolProblem]:
    """PRM800K phase-2 records, grouped by problem: each labeled solution is a candidate whose
    ratings are the labeler's on its pre-generated steps (kept small on purpose: a full
    PRM800K reader in ``labeling/`` can replace it). Records without pre-generated steps or a
    ground-truth answer (phase 1, screening) are skipped. Correctness compares the normalised
    answers (``None``, left to the grader, when the pre-generated answer is missing)."""
    path = Path(path)
    grouped: dict[str, tuple[str, list[PoolCandidate]]] = {}
    for _number, record in _read_jsonl(path):
        question = record.get("question") or {}
        steps = question.get("pre_generated_steps")
        truth = question.get("ground_truth_answer")
        if not steps or truth is None:
            continue
        label_steps = (record.get("label") or {}).get("steps") or []
        ratings: list[int | None] = []
        for i, text in enumerate(steps):
            rating = None
            if i < len(label_steps):
                completions = label_steps[i].get("completions") or []
                match = [c for c in completions if c.get("text") == text] or completions[:1]
                rating = match[0].get("rating") if match else None
            ratings.append(rating if rating in (-1, 0, 1) else None)
        answer = question.get("pre_generated_answer")
        grouped.setdefault(question["problem"], (str(truth), []))[1].append(
            PoolCandidate(
                steps=tuple(steps),
                answer=str(answer or ""),
                correct=None
                if answer is None
                else answer_normalize(answer) == answer_normalize(truth),
                ratings=_phase2_ratings(ratings),
            )
        )
    return [
        PoolProblem(key=f"prm800k/{i}", problem=problem, answer=truth, candidates=tuple(cands))
        for i, (problem, (truth, cands)) in enumerate(grouped.items())
    ]


def pool_load_processbench(path: str | Path) -> list[PoolProblem]:
    """A ProcessBench split (``problem``, ``steps``, ``label``, ``final_answer_correct``): one
    candidate per item, grouped by problem text. The file gives no ground-truth answer, so the
    problem's answer is a correct item's answer when there is one."""
    path = Path(path)
    grouped: dict[str, list[PoolCandidate]] = {}
    for number, record in _read_jsonl(path):
        where = f"{path.name} line {number}"
        problem = _field(record, "problem", str, where)
        steps = _field(record, "steps", list, where)
        label = _field(record, "label", int, where)
        correct = _field(record, "final_answer_correct", bool, where)
        if not -1 <= label < len(steps):
            raise PoolError(f"{where}: field 'label' must be -1..{len(steps) - 1}, got {label}")
        grouped.setdefault(problem, []).append(
            PoolCandidate(
                steps=tuple(str(s) for s in steps),
                answer=answer_from_steps(steps),
                correct=correct,
                ratings=_ratings_from_first_error(len(steps), None if label == -1 else label),
            )
        )
    out = []
    for i, (problem, cands) in enumerate(grouped.items()):
        truth = next((c.answer for c in cands if c.correct), "")
        out.append(
            PoolProblem(
                key=f"processbench/{i}", problem=problem, answer=truth, candidates=tuple(cands)
            )
        )
    return out


def pool_load(spec: str, *, problems: int, candidates: int, seed: int) -> list[PoolProblem]:
    """``synthetic`` or a file path; the file's kind is told from its first record."""
    if spec in SYNTH_KINDS:
        return synthetic_pool(
            problems=problems, candidates=candidates, seed=seed, params=SYNTH_KINDS[spec]
        )
    path = Path(spec)
    if not path.is_file():
        raise PoolError(f"pool {spec!r}: no such file (or use 'synthetic')")
    first = next((record for _, record in _read_jsonl(path)), None)
    if first is None:
        raise PoolError(f"{path.name}: empty")
    if "question" in first and "label" in first:
        return pool_load_prm800k(path)
    if "final_answer_correct" in first:
        return pool_load_processbench(path)
    return pool_load_jsonl(path)
