"""Synthetic MATH-format problems and step-by-step candidates with known first-error steps.

Each problem is a chain of integer operations ("start with 7, add 3, multiply by 2, ...");
a candidate walks the chain one operation per step and ends in PRM800K's ``# Answer`` trailer.
A wrong candidate makes one slip at a known step (misreads the start, miscomputes an
operation, or misreports the final value) and then continues correctly from the wrong value.
Every operation is injective (add, subtract, multiply by k >= 2), so a slip always reaches the
final answer: a candidate's answer differs from the problem's exactly when ``error_step`` is
set. That makes the data useful for checking graders, importers and the selector's training
targets at any scale.

Everything streams (one problem in memory at a time) and depends only on the seed: problem
``i`` is built from its own RNG, so ``iter_problems`` and ``iter_candidates`` agree without
sharing state, and a run can be reproduced or extended.

CLI::

    python bench/synth.py --problems 1000 --per-problem 100 \\
        --out-problems var/synth/problems.jsonl --out-candidates var/synth/candidates.jsonl
"""

from __future__ import annotations

import argparse
import json
import json.encoder
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENERATOR = "synth"
ANSWER_TRAILER = "\n\n# Answer\n\n"
MIN_OPS, MAX_OPS = 1, 18  # steps = opener + operations + final: 3..20

# Phrasings: 16 for the first and the last step, 4 for each operation. Candidate j of a
# problem takes its phrasings from the bits of a variant number (offset ^ j), so the
# candidates of one problem have distinct texts whenever per_problem <= 16 * 4**ops * 16:
# at least 1,024, enough for the paper's 1,000 samples per problem.
OP_PHRASINGS, END_PHRASINGS = 4, 16
OP_BITS, END_BITS = 2, 4


def _capitalized(lead: str, body: str) -> str:
    text = lead + body
    return text[0].upper() + text[1:]


_OPENERS = tuple(
    _capitalized(lead, body)
    for lead in ("", "okay, ", "alright, ", "first, ")
    for body in (
        "I start with ${v}$ and apply the operations in order.",
        "the starting value is ${v}$.",
        "let me track the value step by step, beginning at ${v}$.",
        "we begin at ${v}$.",
    )
)
_FINALS = tuple(
    _capitalized(lead, body)
    for lead in ("so ", "finally, ", "putting it together, ", "in the end, ")
    for body in (
        "the result is ${v}$.",
        "the answer is ${v}$.",
        "the value after the last operation is ${v}$.",
        "that leaves ${v}$.",
    )
)
_OP_TEXT = {
    "add": (
        "Adding ${k}$ to ${a}$ gives ${b}$.",
        "${a} + {k} = {b}$.",
        "Next I add ${k}$: ${a} + {k} = {b}$.",
        "After adding ${k}$ the value is ${b}$.",
    ),
    "sub": (
        "Subtracting ${k}$ from ${a}$ gives ${b}$.",
        "${a} - {k} = {b}$.",
        "Next I subtract ${k}$: ${a} - {k} = {b}$.",
        "After subtracting ${k}$ the value is ${b}$.",
    ),
    "mul": (
        "Multiplying ${a}$ by ${k}$ gives ${b}$.",
        "${a} \\times {k} = {b}$.",
        "Next I multiply by ${k}$: ${a} \\cdot {k} = {b}$.",
        "After multiplying by ${k}$ the value is ${b}$.",
    ),
}
_OP_PROBLEM_TEXT = {"add": "add ${k}$", "sub": "subtract ${k}$", "mul": "multiply by ${k}$"}
_OP_SOLUTION_TEXT = {
    "add": "{a} + {k} = {b}",
    "sub": "{a} - {k} = {b}",
    "mul": "{a} \\cdot {k} = {b}",
}


@dataclass(frozen=True)
class SynthProblem:
    index: int
    start: int
    ops: tuple[tuple[str, int], ...]  # (kind, operand)
    values: tuple[int, ...]  # values[i] is the value after i operations; values[0] = start
    rng: random.Random  # continues after the problem was drawn: candidates come from it

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def subject(self) -> str:
        return "Prealgebra" if len(self.ops) <= 6 else "Algebra"

    @property
    def level(self) -> int:
        return min(5, 1 + len(self.ops) // 4)

    @property
    def unique_id(self) -> str:
        return f"synth/{self.subject.lower()}/{self.index}.json"


def _apply(kind: str, a: int, k: int) -> int:
    if kind == "add":
        return a + k
    if kind == "sub":
        return a - k
    return a * k


def _problem_build(seed: int, index: int) -> SynthProblem:
    # A string seed is hashed with SHA-512 by `random`: stable across processes and versions.
    rng = random.Random(f"stepwise-synth:{seed}:{index}")
    n_ops = rng.randint(MIN_OPS, MAX_OPS)
    value = rng.randint(1, 50)
    values = [value]
    ops = []
    for _ in range(n_ops):
        # Multiply only small values so numbers stay readable over 18 operations.
        kind = (
            rng.choice(("add", "sub", "mul")) if abs(value) < 1000 else rng.choice(("add", "sub"))
        )
        k = rng.randint(2, 9) if kind == "mul" else rng.randint(1, 99)
        value = _apply(kind, value, k)
        ops.append((kind, k))
        values.append(value)
    return SynthProblem(index, values[0], tuple(ops), tuple(values), rng)


def _problem_record(p: SynthProblem) -> dict[str, Any]:
    instructions = ", then ".join(_OP_PROBLEM_TEXT[kind].format(k=k) for kind, k in p.ops)
    problem = f"Start with ${p.start}$. In order: {instructions}. What number do you end with?"
    chain = ", ".join(
        _OP_SOLUTION_TEXT[kind].format(a=p.values[i], k=k, b=p.values[i + 1])
        for i, (kind, k) in enumerate(p.ops)
    )
    solution = f"Step by step: ${chain}$, so the result is $\\boxed{{{p.answer}}}$."
    return {
        "problem": problem,
        "solution": solution,
        "answer": str(p.answer),
        "subject": p.subject,
        "level": p.level,
        "unique_id": p.unique_id,
    }


def iter_problems(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """MATH-format problem records ``synth/<subject>/<i>.json`` for i in 0..n-1."""
    for index in range(n):
        yield _problem_record(_problem_build(seed, index))


_encode_str = json.encoder.encode_basestring  # the C encoder json.dumps itself uses


def _positional(template: str) -> str:
    # Bound ``str.format`` with positional arguments is the cheapest formatting call there is.
    return template.replace("{a}", "{0}").replace("{k}", "{1}").replace("{b}", "{2}")


_OPENER_FMT = tuple(t.replace("{v}", "{0}").format for t in _OPENERS)
_FINAL_FMT = tuple((t.replace("{v}", "{0}") + ANSWER_TRAILER + "{0}").format for t in _FINALS)
_OP_FMT = {kind: tuple(_positional(t).format for t in texts) for kind, texts in _OP_TEXT.items()}


class _Phrasebook:
    """One problem's correct step texts in every phrasing, plain and JSON-encoded.

    A correct candidate is assembled from these without formatting anything; a wrong one
    reuses the steps before its slip and formats only the rest. This caching is what makes the
    generator fast enough to feed import benchmarks.
    """

    def __init__(self, p: SynthProblem) -> None:
        self.p = p
        # Per operation step: (multiplies?, signed operand, shown operand, phrasings).
        self.ops = [
            (kind == "mul", -k if kind == "sub" else k, k, _OP_FMT[kind]) for kind, k in p.ops
        ]
        self.text: list[list[str]] = [[f(p.start) for f in _OPENER_FMT]]
        for i, (_, _, k, fmts) in enumerate(self.ops):
            self.text.append([f(p.values[i], k, p.values[i + 1]) for f in fmts])
        self.text.append([f(p.answer) for f in _FINAL_FMT])
        self.enc = [[_encode_str(t) for t in texts] for texts in self.text]
        # Where each step's phrasing sits in the variant number.
        n_ops = len(p.ops)
        self.shifts = [0, *(END_BITS + OP_BITS * i for i in range(n_ops))]
        self.shifts.append(END_BITS + OP_BITS * n_ops)
        masks = [END_PHRASINGS - 1, *[OP_PHRASINGS - 1] * n_ops, END_PHRASINGS - 1]
        self.slots = list(zip(self.shifts, masks, strict=True))
        self.variant_bits = 2 * END_BITS + OP_BITS * n_ops

    def candidate(
        self, variant: int, error_step: int | None, delta: int
    ) -> tuple[list[str], list[str], int]:
        """(steps, JSON-encoded steps, final value) of one candidate.

        ``variant`` picks a phrasing per step (a few bits each); ``delta`` is the slip
        made at ``error_step``, after which the candidate computes correctly from the wrong
        value.
        """
        text, enc_cache = self.text, self.enc
        choices = [(variant >> shift) & mask for shift, mask in self.slots]
        last = len(text) - 1
        stop = last + 1 if error_step is None else error_step
        steps = [text[s][choices[s]] for s in range(stop)]
        enc = [enc_cache[s][choices[s]] for s in range(stop)]
        if error_step is None:
            return steps, enc, self.p.answer
        if error_step == 0:
            value = self.p.start + delta
            steps.append(_OPENER_FMT[choices[0]](value))
            first_op = 1
        else:
            value = self.p.values[error_step - 1]
            first_op = error_step
        ops = self.ops
        for i in range(first_op, last):
            multiplies, signed_k, k, fmts = ops[i - 1]
            a = value
            value = a * k if multiplies else a + signed_k
            if i == error_step:
                value += delta
            steps.append(fmts[choices[i]](a, k, value))
        if error_step == last:
            value += delta  # computed right, reported wrong
        steps.append(_FINAL_FMT[choices[last]](value))
        enc.extend(map(_encode_str, steps[stop:]))
        return steps, enc, value


def _iter_raw(
    n_problems: int, per_problem: int, seed: int, wrong_fraction: float
) -> Iterator[tuple[str, list[str], list[str], int, int | None]]:
    if not 0.0 <= wrong_fraction <= 1.0:
        raise ValueError(f"wrong_fraction must be in [0, 1], got {wrong_fraction}")
    for index in range(n_problems):
        p = _problem_build(seed, index)
        book = _Phrasebook(p)
        rng = p.rng
        n_steps = len(book.text)
        offset = rng.getrandbits(book.variant_bits)
        wrong_below = int(wrong_fraction * (1 << 20))
        uid = p.unique_id
        random_bits = rng.getrandbits
        for j in range(per_problem):
            # One draw per candidate: 20 bits decide right/wrong, the rest place and size the
            # slip (a nonzero delta in -9..9). Cheap, and still a pure function of the seed.
            bits = random_bits(64)
            if (bits & 0xFFFFF) < wrong_below:
                error_step: int | None = (bits >> 20) % n_steps
                delta = ((bits >> 40) % 9 + 1) * (1 if (bits >> 50) & 1 else -1)
            else:
                error_step, delta = None, 0
            steps, enc, value = book.candidate(offset ^ j, error_step, delta)
            yield uid, steps, enc, value, error_step


def iter_candidates(
    n_problems: int, per_problem: int, seed: int = 0, wrong_fraction: float = 0.6
) -> Iterator[dict[str, Any]]:
    """Candidate records for problems 0..n_problems-1, ``per_problem`` each, in problem order.

    Each is ``{"unique_id", "steps", "answer", "generator": "synth", "error_step"}``, where
    ``error_step`` is the index of the one wrong step (``None`` for a correct candidate).
    """
    for uid, steps, _, value, error_step in _iter_raw(
        n_problems, per_problem, seed, wrong_fraction
    ):
        yield {
            "unique_id": uid,
            "steps": steps,
            "answer": str(value),
            "generator": GENERATOR,
            "error_step": error_step,
        }


def iter_candidate_lines(
    n_problems: int, per_problem: int, seed: int = 0, wrong_fraction: float = 0.6
) -> Iterator[str]:
    """The same records as ``iter_candidates``, already JSON-encoded (no trailing newline)."""
    uid_enc = ""
    last_uid = None
    for uid, _, enc, value, error_step in _iter_raw(n_problems, per_problem, seed, wrong_fraction):
        if uid is not last_uid:
            uid_enc, last_uid = _encode_str(uid), uid
        error = "null" if error_step is None else str(error_step)
        yield (
            f'{{"unique_id":{uid_enc},"steps":[{",".join(enc)}],"answer":"{value}",'
            f'"generator":"{GENERATOR}","error_step":{error}}}'
        )


def write_jsonl(path: Path | str, records: Iterable[dict[str, Any] | str]) -> int:
    """Stream records (dicts, or lines already encoded) to ``path``, ``-`` for stdout.

    Returns the number of lines written.
    """
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    count = 0
    out = sys.stdout if str(path) == "-" else None
    if out is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        out = open(path, "w", encoding="utf-8", buffering=1 << 20)  # noqa: SIM115
    try:
        batch: list[str] = []
        for record in records:
            batch.append(record if isinstance(record, str) else encode(record))
            count += 1
            if len(batch) == 4096:
                out.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            out.write("\n".join(batch) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, required=True, help="number of problems")
    parser.add_argument("--per-problem", type=int, required=True, help="candidates per problem")
    parser.add_argument("--out-problems", required=True, help="problems JSONL path (- = stdout)")
    parser.add_argument("--out-candidates", required=True, help="candidates JSONL path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wrong-fraction", type=float, default=0.6)
    args = parser.parse_args(argv)
    if args.problems < 0 or args.per_problem < 0:
        parser.error("--problems and --per-problem must be >= 0")
    if not 0.0 <= args.wrong_fraction <= 1.0:
        parser.error("--wrong-fraction must be between 0 and 1")

    started = time.perf_counter()
    n_problems = write_jsonl(args.out_problems, iter_problems(args.problems, args.seed))
    mid, mid_cpu = time.perf_counter(), time.process_time()
    n_candidates = write_jsonl(
        args.out_candidates,
        iter_candidate_lines(args.problems, args.per_problem, args.seed, args.wrong_fraction),
    )
    wall, cpu = time.perf_counter() - mid, time.process_time() - mid_cpu
    # CPU seconds as well as wall seconds: on a shared machine the wall rate mostly measures
    # the neighbours.
    print(
        f"synth: {n_problems} problems in {mid - started:.2f}s; {n_candidates} candidates in "
        f"{wall:.2f}s wall ({n_candidates / max(wall, 1e-9):,.0f}/s), "
        f"{cpu:.2f}s CPU ({n_candidates / max(cpu, 1e-9):,.0f}/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
