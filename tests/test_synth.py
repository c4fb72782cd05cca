"""bench/synth.py: deterministic, streaming synthetic problems and candidates with known errors."""

import json
import re
import subprocess
import sys
import tracemalloc
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest

from bench import synth

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"-?\d+")
OP_IN_PROBLEM = re.compile(r"(add|subtract|multiply by) \$(\d+)\$")


def problems_by_id(n: int, seed: int) -> dict[str, dict]:
    return {p["unique_id"]: p for p in synth.iter_problems(n, seed)}


def first_wrong_step(problem: dict, steps: list[str]) -> int | None:
    """Re-derive, from the problem text alone, the first step whose claimed value is wrong."""
    opening = re.match(r"Start with \$(-?\d+)\$", problem["problem"])
    assert opening, problem["problem"]
    start = int(opening.group(1))
    ops = [(name, int(k)) for name, k in OP_IN_PROBLEM.findall(problem["problem"])]
    assert len(steps) == len(ops) + 2
    claimed = int(NUMBER.findall(steps[0])[0])
    if claimed != start:
        return 0
    for i, (name, k) in enumerate(ops, start=1):
        expected = {"add": claimed + k, "subtract": claimed - k, "multiply by": claimed * k}[name]
        claimed = int(NUMBER.findall(steps[i])[-1])  # the step's result is its last number
        if claimed != expected:
            return i
    body, _, answer = steps[-1].partition("\n\n# Answer\n\n")
    if int(answer) != claimed or int(NUMBER.findall(body)[-1]) != claimed:
        return len(steps) - 1
    return None


def test_same_seed_same_output_and_other_seeds_differ() -> None:
    a = list(synth.iter_candidate_lines(50, 5, seed=7))
    assert a == list(synth.iter_candidate_lines(50, 5, seed=7))
    assert a != list(synth.iter_candidate_lines(50, 5, seed=8))
    assert list(synth.iter_problems(50, 7)) == list(synth.iter_problems(50, 7))
    # A prefix of a bigger run is the smaller run: problem i depends only on (seed, i).
    assert list(synth.iter_candidate_lines(80, 5, seed=7))[: len(a)] == a


def test_encoded_lines_are_exactly_the_records() -> None:
    records = list(synth.iter_candidates(200, 4, seed=3))
    lines = list(synth.iter_candidate_lines(200, 4, seed=3))
    assert [json.loads(line) for line in lines] == records
    assert lines[0] == json.dumps(records[0], ensure_ascii=False, separators=(",", ":"))


def test_error_step_is_the_first_wrong_step_and_reaches_the_answer() -> None:
    problems = problems_by_id(300, seed=11)
    seen_positions: Counter[str] = Counter()
    for cand in synth.iter_candidates(300, 8, seed=11):
        problem = problems[cand["unique_id"]]
        error_step = cand["error_step"]
        assert first_wrong_step(problem, cand["steps"]) == error_step
        # Every operation is injective, so a slip always changes the final answer.
        assert (cand["answer"] != problem["answer"]) == (error_step is not None)
        if error_step is not None:
            last = len(cand["steps"]) - 1
            seen_positions[
                "first" if error_step == 0 else "last" if error_step == last else "middle"
            ] += 1
    assert set(seen_positions) == {"first", "middle", "last"}


def test_step_counts_span_3_to_20_with_the_answer_last() -> None:
    lengths: Counter[int] = Counter()
    for cand in synth.iter_candidates(2000, 1, seed=0):
        steps = cand["steps"]
        lengths[len(steps)] += 1
        assert all("# Answer" not in s and "\n" not in s for s in steps[:-1])
        assert steps[-1].endswith(f"\n\n# Answer\n\n{cand['answer']}")
        assert cand["generator"] == "synth"
    assert min(lengths) == 3 and max(lengths) == 20
    assert len(lengths) == 18  # every length in between occurs


def test_wrong_fraction_is_respected() -> None:
    def wrong_share(fraction: float) -> float:
        cands = list(synth.iter_candidates(1000, 20, seed=5, wrong_fraction=fraction))
        return sum(c["error_step"] is not None for c in cands) / len(cands)

    assert wrong_share(0.0) == 0.0
    assert wrong_share(1.0) == 1.0
    assert wrong_share(0.6) == pytest.approx(0.6, abs=0.02)
    with pytest.raises(ValueError, match="wrong_fraction"):
        next(synth.iter_candidates(1, 1, wrong_fraction=1.5))


def test_candidates_of_a_problem_have_distinct_texts_up_to_1024() -> None:
    assert len(set(synth._OPENERS)) == len(set(synth._FINALS)) == synth.END_PHRASINGS
    assert {len(set(t)) for t in synth._OP_TEXT.values()} == {synth.OP_PHRASINGS}
    # The shortest chains (one operation) have the fewest phrasings: 16 * 4 * 16 = 1,024.
    short = [p for p in synth.iter_problems(200, seed=2) if len(p["problem"].split("then")) == 1]
    assert short, "some problems have a single operation"
    by_problem: dict[str, set[str]] = {}
    for cand in synth.iter_candidates(200, 1024, seed=2, wrong_fraction=0.0):
        by_problem.setdefault(cand["unique_id"], set()).add("\n".join(cand["steps"]))
    assert all(len(texts) == 1024 for texts in by_problem.values())


def test_problem_records_are_math_format() -> None:
    subjects = set()
    for i, p in enumerate(synth.iter_problems(500, seed=4)):
        assert set(p) == {"problem", "solution", "answer", "subject", "level", "unique_id"}
        slug = p["subject"].lower()
        assert p["unique_id"] == f"synth/{slug}/{i}.json"
        assert isinstance(p["level"], int) and 1 <= p["level"] <= 5
        assert f"\\boxed{{{p['answer']}}}" in p["solution"]
        assert p["answer"] == str(int(p["answer"]))  # a plain integer, no LaTeX
        subjects.add(p["subject"])
    assert subjects == {"Prealgebra", "Algebra"}


def test_streams_in_constant_memory() -> None:
    # Lazy: asking for the first of a billion candidates returns at once.
    assert next(synth.iter_candidate_lines(10**9, 10**9)).startswith('{"unique_id":')

    def peak(n_problems: int) -> int:
        tracemalloc.start()
        for _ in synth.iter_candidate_lines(n_problems, 10, seed=1):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(50), peak(600)
    assert large < 2 * small + 200_000, (small, large)


def test_cli_writes_valid_jsonl(tmp_path: Path) -> None:
    problems, candidates = tmp_path / "p.jsonl", tmp_path / "c.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "synth.py"),
            "--problems",
            "300",
            "--per-problem",
            "7",
            "--seed",
            "9",
            "--out-problems",
            str(problems),
            "--out-candidates",
            str(candidates),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "2100 candidates" in result.stderr
    problem_rows = [json.loads(line) for line in problems.read_text().splitlines()]
    candidate_rows = [json.loads(line) for line in candidates.read_text().splitlines()]
    assert problem_rows == list(synth.iter_problems(300, 9))
    assert candidate_rows == list(synth.iter_candidates(300, 7, 9))


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "synth.py"),
            "--problems",
            "1",
            "--per-problem",
            "1",
            "--out-problems",
            str(tmp_path / "p"),
            "--out-candidates",
            str(tmp_path / "c"),
            "--wrong-fraction",
            "1.5",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "--wrong-fraction" in result.stderr
    assert not (tmp_path / "c").exists()


def test_writes_every_candidate_line_it_is_given(tmp_path: Path) -> None:
    # Speed lives in bench/ (the CLI prints candidates per second); here only the count and
    # the shape, which a timed assertion on a shared machine would make flaky.
    n = 15_000
    lines = synth.iter_candidate_lines(n // 50, 50, seed=0)
    written = synth.write_jsonl(tmp_path / "c.jsonl", lines)
    assert written == n
    assert sum(1 for _ in (tmp_path / "c.jsonl").open()) == n
    first = next(islice((tmp_path / "c.jsonl").open(), 0, 1))
    assert json.loads(first)["generator"] == "synth"
