import json
from pathlib import Path

import pytest

from selector.simulation.oracle import Oracle
from selector.simulation.pool import (
    ERROR_TYPES,
    PoolError,
    pool_load,
    pool_load_jsonl,
    synthetic_pool,
)


def test_synthetic_pool_depends_only_on_its_seed():
    assert synthetic_pool(problems=5, candidates=8, seed=3) == synthetic_pool(
        problems=5, candidates=8, seed=3
    )
    assert synthetic_pool(problems=5, candidates=8, seed=3) != synthetic_pool(
        problems=5, candidates=8, seed=4
    )


def test_synthetic_candidates_agree_with_their_error_type():
    pool = synthetic_pool(problems=60, candidates=16, seed=0)
    seen = set()
    for problem in pool:
        for cand in problem.candidates:
            seen.add(cand.error_type)
            assert cand.steps[-1].endswith(f"# Answer\n\n{cand.answer}")
            assert len(cand.ratings) == len(cand.steps)
            assert cand.correct == (cand.answer == problem.answer)
            if cand.error_type is None:
                assert cand.first_error is None and cand.correct
                assert set(cand.ratings) <= {0, 1}
            else:
                first = cand.first_error
                assert first is not None
                assert all(r is None for r in cand.ratings[first + 1 :])
                # A wrong step that still reaches the right answer is invisible to the grader.
                assert cand.correct == (cand.error_type == "wrong_step_right_answer")
                if cand.error_type == "wrong_final":
                    assert first == len(cand.steps) - 1
    assert seen == {None, *ERROR_TYPES}


def test_oracle_without_noise_answers_phase2_from_the_truth():
    oracle = Oracle()
    assert oracle.answer([1, 0, 1]).ratings == [1, 0, 1]
    assert oracle.answer([1, 0, 1]).finish_reason == "solution"
    answer = oracle.answer([1, -1, None, None])
    assert (answer.ratings, answer.finish_reason) == ([1, -1], "found_error")
    assert oracle.answer([1, None]).finish_reason == "give_up"


def test_oracle_noise_rates_follow_the_options_and_the_seed():
    truth = [1, 1, 1, -1]
    noisy = Oracle(flip_rate=0.2, seed=1)
    answers = [noisy.answer(truth, item=i) for i in range(2000)]
    assert answers[5] == Oracle(flip_rate=0.2, seed=1).answer(truth, item=5)
    # A false alarm on any of the first three steps, else a missed error at the fourth.
    found_at_truth = sum(a.ratings == [1, 1, 1, -1] for a in answers) / len(answers)
    assert found_at_truth == pytest.approx(0.8**4, abs=0.04)
    neutral = Oracle(neutral_rate=0.3).answer([1] * 4000, item=0).ratings
    assert neutral.count(0) / 4000 == pytest.approx(0.3, abs=0.03)


def test_oracle_bias_makes_one_annotator_lenient_and_another_harsh():
    oracle = Oracle(bias=0.4, annotators=2)
    lenient = [oracle.answer([-1], annotator=1, item=i).ratings for i in range(1000)]
    harsh = [oracle.answer([1], annotator=0, item=i).ratings for i in range(1000)]
    assert sum(r == [1] for r in lenient) / 1000 == pytest.approx(0.4, abs=0.05)
    assert sum(r == [-1] for r in harsh) / 1000 == pytest.approx(0.4, abs=0.05)
    assert Oracle(bias=0.4, annotators=2).answer([-1], annotator=0).ratings == [-1]


def _write(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_user_jsonl_loads_first_wrong_step_and_ratings(tmp_path):
    path = _write(
        tmp_path / "pool.jsonl",
        [
            {
                "problem": "1+1?",
                "answer": "2",
                "candidates": [
                    {"steps": ["1+1=3", "# Answer\n\n3"], "first_wrong_step": 0, "correct": False},
                    {"steps": ["1+1=2", "# Answer\n\n2"], "ratings": [1, 1]},
                    {"steps": ["hm", "1+1=3", "x"], "ratings": [0, -1, 1]},
                ],
            }
        ],
    )
    (problem,) = pool_load(str(path), problems=0, candidates=0, seed=0)
    a, b, c = problem.candidates
    assert a.ratings == (-1, None) and a.correct is False
    assert b.answer == "2" and b.correct is None  # left to the grader
    assert c.ratings == (0, -1, None)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"answer": "2", "candidates": []}, "line 1: field 'problem'"),
        ({"problem": "p", "answer": "2", "candidates": [{"steps": ["a"]}]}, "candidates[0]"),
        (
            {"problem": "p", "answer": "2", "candidates": [{"steps": ["a"], "ratings": [2]}]},
            "field 'ratings'",
        ),
        (
            {
                "problem": "p",
                "answer": "2",
                "candidates": [{"steps": ["a"], "first_wrong_step": 1}],
            },
            "field 'first_wrong_step'",
        ),
    ],
)
def test_user_jsonl_errors_name_line_and_field(tmp_path, record, message):
    path = _write(tmp_path / "bad.jsonl", [record])
    with pytest.raises(PoolError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pool_load_jsonl(path)


def test_processbench_items_load_with_their_first_error(tmp_path):
    path = _write(
        tmp_path / "gsm8k.jsonl",
        [
            {
                "id": "a",
                "problem": "p",
                "steps": ["x", "y", "\\boxed{3}"],
                "label": 1,
                "final_answer_correct": False,
            },
            {
                "id": "b",
                "problem": "p",
                "steps": ["x", "\\boxed{4}"],
                "label": -1,
                "final_answer_correct": True,
            },
        ],
    )
    (problem,) = pool_load(str(path), problems=0, candidates=0, seed=0)
    assert problem.answer == "4"
    assert [c.ratings for c in problem.candidates] == [(1, -1, None), (1, 1)]
    assert [c.correct for c in problem.candidates] == [False, True]


def test_prm800k_phase2_sample_loads(shared_data):
    pool = pool_load(
        str(shared_data / "prm800k_phase2_sample.jsonl"), problems=0, candidates=0, seed=0
    )
    cands = [c for p in pool for c in p.candidates]
    assert len(cands) == 9
    # Every sample record stopped at an error: the truth ends at its first -1.
    assert all(c.first_error is not None for c in cands)
    assert all(c.correct is False for c in cands)
