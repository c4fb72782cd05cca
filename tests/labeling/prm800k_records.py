"""A generator of PRM800K records covering the format's corners, a loader for the tests, and
labels on which each TRL export option shows."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from labeling.models import AnnotatorProfile
from labeling.services.imports import prm800k_import
from tests.factories import LabelFactory, annotator

QUESTION_KEYS_PHASE2 = [
    "problem",
    "ground_truth_solution",
    "ground_truth_answer",
    "pre_generated_steps",
    "pre_generated_answer",
    "pre_generated_verifier_score",
]


def _completion(rng: random.Random, text: str, rating: int | None) -> dict[str, Any]:
    return {"text": text, "rating": rating, "flagged": rng.choice([False, None, True])}


def generate_records(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` records: phase 1 and 2, nulls, alternatives, human completions, flags, QC, -1."""
    rng = random.Random(seed)
    records = []
    problems = [f"Compute ${i}^2 + \\frac{{1}}{{{i}}}$ — naïve “quotes” 🙂" for i in range(1, 6)]
    base = datetime(2022, 7, 1, 12, 0, 0, 123456)
    for i in range(n):
        phase1 = i % 3 == 0
        problem = problems[i % len(problems)]
        n_steps = rng.randint(1, 6)
        step_texts = [f"Step {j} of record {i}: $x_{j} = {j * i}$" for j in range(n_steps)]
        step_texts[-1] += f"\n\n# Answer\n\n{i}"
        steps: list[dict[str, Any]] = []
        for j, text in enumerate(step_texts):
            last = j == n_steps - 1
            if phase1 and rng.random() < 0.5:
                alts = [
                    _completion(rng, f"{text} (alt {k})", rng.choice([-1, 0, 1, None]))
                    for k in range(rng.randint(2, 4))
                ]
                if rng.random() < 0.4:
                    human: dict[str, Any] = {
                        "text": f"Human step {j}",
                        "rating": None,
                        "source": "human",
                        "flagged": rng.choice([False, True]),
                    }
                    if rng.random() < 0.5:
                        human["corrected_rating"] = rng.choice([-1, 0, 1])
                    steps.append(
                        {"completions": alts, "human_completion": human, "chosen_completion": None}
                    )
                else:
                    steps.append(
                        {
                            "completions": alts,
                            "human_completion": None,
                            "chosen_completion": rng.randrange(len(alts)),
                        }
                    )
            elif last and not phase1 and rng.random() < 0.7:
                alts = [_completion(rng, text, -1)] + [
                    _completion(rng, f"alt {k}", rng.choice([-1, 0, 1])) for k in range(3)
                ]
                steps.append(
                    {"completions": alts, "human_completion": None, "chosen_completion": None}
                )
            else:
                steps.append(
                    {
                        "completions": [_completion(rng, text, rng.choice([0, 1]))],
                        "human_completion": None,
                        "chosen_completion": 0,
                    }
                )
        kind = rng.choice(["normal"] * 6 + ["qc", "screening"])
        # PRM800K's screening set is generation -1; phase 1 has no generations at all.
        generation = None if phase1 else -1 if kind == "screening" else rng.choice([1, 2, 6, 10])
        question: dict[str, Any] = {"problem": problem}
        if not phase1 or rng.random() < 0.3:
            question["ground_truth_solution"] = f"Reference solution for {problem}"
        # The same problem always has the same answer in PRM800K, but one record here differs,
        # to exercise the override path.
        question["ground_truth_answer"] = "42" if i != 4 else "42.0"
        if not phase1:
            question["pre_generated_steps"] = step_texts
            question["pre_generated_answer"] = str(i)
            question["pre_generated_verifier_score"] = rng.choice([rng.random(), 0.0, 1.0])
        records.append(
            {
                "labeler": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "timestamp": (base + timedelta(minutes=i, microseconds=i)).isoformat(
                    timespec="microseconds"
                ),
                "generation": generation,
                "is_quality_control_question": kind == "qc",
                "is_initial_screening_question": kind == "screening",
                "question": question,
                "label": {
                    "steps": steps,
                    "total_time": rng.randint(0, 2_000_000),
                    "finish_reason": rng.choice(
                        ["found_error", "solution", "bad_problem", "give_up"]
                    ),
                },
            }
        )
    return records


def load_records(records: list[dict[str, Any]], tmp_path: Path) -> None:
    """Store records through the real importer, as an admin would."""
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with open(path, "rb") as stream:
        report = prm800k_import(stream=stream, source=str(path))
    assert report.error_lines() == []
    assert report.imported == len(records)


def load_shared_samples(shared_data: Path, tmp_path: Path) -> set[tuple[str, int, str]]:
    """Import the PRM800K samples in ../shared/data; returns their distinct -1-rated
    completions as (problem, step index, text)."""
    records = [
        json.loads(line)
        for name in ["prm800k_phase1_sample.jsonl", "prm800k_phase2_sample.jsonl"]
        for line in (shared_data / name).read_text().splitlines()
    ]
    load_records(records, tmp_path)
    return {
        (record["question"]["problem"], k, completion["text"])
        for record in records
        for k, step in enumerate(record["label"]["steps"])
        for completion in step.get("completions") or []
        if completion.get("rating") == -1
    }


# --- Every record shape of the public release (docs/decisions/0008-prm800k-record-shapes.md) --


def _c(text: str, rating: int | None, flagged: bool | None = False) -> dict[str, Any]:
    return {"text": text, "rating": rating, "flagged": flagged}


def _s(
    completions: list[dict[str, Any]] | None,
    chosen: int | None = 0,
    human: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"completions": completions, "human_completion": human, "chosen_completion": chosen}


def _human(text: str, corrected: int | None = None, *, with_corrected: bool = False) -> dict:
    human: dict[str, Any] = {"text": text, "rating": None, "source": "human", "flagged": False}
    if with_corrected or corrected is not None:
        human["corrected_rating"] = corrected
    return human


def _record(
    n: int,
    steps: list[dict[str, Any]],
    finish_reason: str,
    *,
    phase: int,
    generation: int | None = None,
    qc: bool = False,
    screening: bool = False,
    answer: str | None = "7",
    solution: str | None = "Reference: it is 7.",
    own: list[str] | None = None,
) -> dict[str, Any]:
    problem = f"Shape problem {n}: what is $3 + 4$?"
    question: dict[str, Any] = {"problem": problem}
    if phase == 1:
        question["ground_truth_answer"] = answer
    else:
        question["ground_truth_solution"] = solution
        question["ground_truth_answer"] = answer
        question["pre_generated_steps"] = own or []
        question["pre_generated_answer"] = "7"
        question["pre_generated_verifier_score"] = 0.25
    return {
        "labeler": str(uuid.UUID(int=1000 + n, version=4)),
        "timestamp": f"2022-0{1 + n % 9}-1{n % 10}T08:0{n % 10}:00.{n:06d}",
        "generation": generation,
        "is_quality_control_question": qc,
        "is_initial_screening_question": screening,
        "question": question,
        "label": {"steps": steps, "total_time": 1000 * (n + 1), "finish_reason": finish_reason},
    }


def shape_records() -> dict[str, dict[str, Any]]:
    """One hand-written record per shape found in the audit, named for it."""
    own = ["We add.", "So $3 + 4 = 8$.", "# Answer\n\n8"]
    return {
        # Phase 1: several alternatives per step, all -1 then the labeler's own step.
        "phase1_all_negative_then_human": _record(
            1,
            [
                _s([_c("Add 3 and 4.", 1)]),
                _s(
                    [_c("3 + 4 = 8", -1), _c("3 + 4 = 6", -1), _c("3 + 4 = 9", -1)],
                    None,
                    _human("3 + 4 = 7"),
                ),
                _s([_c("# Answer\n\n7", 1), _c("# Answer\n\n8", -1)], 0),
            ],
            "solution",
            phase=1,
        ),
        # Phase 1 give-up: the last step was never shown, every field null.
        "phase1_give_up_completions_null": _record(
            2,
            [
                _s([_c("Start.", 0), _c("Begin with 3.", -1)], 0),
                _s(None, None),
            ],
            "give_up",
            phase=1,
        ),
        # Phase 1 give-up whose last step was shown but not rated.
        "phase1_give_up_unrated_last_step": _record(
            3,
            [
                _s([_c("Start.", 1)]),
                _s([_c("Maybe 8.", None), _c("Maybe 9.", None)], None),
            ],
            "give_up",
            phase=1,
        ),
        # Phase 1 human completion with a corrected_rating (set, and present as null).
        "phase1_corrected_rating": _record(
            4,
            [
                _s([_c("It is 8.", -1), _c("It is 9.", -1)], None, _human("It is 7.", 1)),
                _s(
                    [_c("So 7.", 0), _c("So 8.", -1)],
                    None,
                    _human("# Answer\n\n7", None, with_corrected=True),
                ),
            ],
            "solution",
            phase=1,
        ),
        # Phase 1 with flagged and rating nulls, and a chosen -1 (rare but legal).
        "phase1_nulls_and_flags": _record(
            5,
            [
                _s([_c("Three plus four.", 1, None), _c("Three times four.", -1, True)], 0),
                _s([_c("Is 7.", 0, None)], 0),
            ],
            "solution",
            phase=1,
        ),
        # Phase 2: one completion per step, alternatives only at the error step (chosen null).
        "phase2_found_error": _record(
            6,
            [
                _s([_c(own[0], 1, None)]),
                _s([_c(own[1], -1, None), _c("So $3 + 4 = 7$.", 1), _c("So 12.", -1)], None),
            ],
            "found_error",
            phase=2,
            generation=6,
            own=own,
        ),
        # Phase 2 solution, every step rated, none negative.
        "phase2_solution": _record(
            7,
            [_s([_c(t, 1, None)]) for t in ["Add.", "Get 7.", "# Answer\n\n7"]],
            "solution",
            phase=2,
            generation=9,
            own=["Add.", "Get 7.", "# Answer\n\n7"],
        ),
        # Initial screening (generation -1): null ground truths.
        "phase2_screening_null_ground_truth": _record(
            8,
            [_s([_c(own[0], 0, None)]), _s([_c(own[1], -1, None)], None)],
            "found_error",
            phase=2,
            generation=-1,
            screening=True,
            answer=None,
            solution=None,
            own=own,
        ),
        # Quality-control question.
        "phase2_quality_control": _record(
            9,
            [_s([_c(own[0], 1, None)]), _s([_c(own[1], -1, None), _c("Seven.", 1)], None)],
            "found_error",
            phase=2,
            generation=3,
            qc=True,
            own=own,
        ),
        # Phase 2 give-up / bad problem: few or no steps.
        "phase2_give_up": _record(
            10,
            [_s([_c(own[0], 1, None)]), _s(None, None)],
            "give_up",
            phase=2,
            generation=2,
            own=own,
        ),
        "phase2_bad_problem_no_steps": _record(
            11, [], "bad_problem", phase=2, generation=4, own=own
        ),
        # A corrected step beside the rated -1 at the error step (as Stepwise writes it).
        "phase2_error_with_human_completion": _record(
            12,
            [
                _s([_c(own[0], 1, None)]),
                _s(
                    [_c(own[1], -1, None), _c("So 3 + 4 = 9.", -1)],
                    None,
                    _human("So $3 + 4 = 7$.", with_corrected=True),
                ),
            ],
            "found_error",
            phase=2,
            generation=7,
            own=own,
        ),
        # Keys left out of a step or completion read as null.
        "phase1_missing_keys": _record(
            13,
            [
                {"completions": [{"text": "Add.", "rating": 1}], "chosen_completion": 0},
                {
                    "completions": [{"text": "Seven.", "rating": -1}, {"text": "7.", "rating": 1}],
                    "chosen_completion": 1,
                },
            ],
            "solution",
            phase=1,
        ),
    }


# --- Labels on which each TRL stepwise option changes the export -------------------------------


def stepwise_option_labels() -> dict[str, list[tuple[str, ...]]]:
    """Labels on which each TRL option alone changes the stepwise export: a rated branch
    (``trajectories_only``), a flagged negative step (``include_flagged``), a paused annotator
    and one who failed screening (``include_unreliable``), a corrected step written at a
    phase-2 error, as Stepwise stores it (``exclude_human_completions``).

    Returns the exported rows' completions (as ``row_completions`` reads them) per option set
    to true, "" for all defaults.
    """
    branch = [_s([_c("a", 1)]), _s([_c("b", 1), _c("b-alt", -1)])]
    LabelFactory(steps=branch, finish_reason="solution")
    flagged = [_s([_c("c", 1)]), _s([_c("f", -1, flagged=True)])]
    LabelFactory(steps=flagged, finish_reason="found_error")
    corrected = [_s([_c("d", 1)]), _s([_c("e", -1)], human=_human("e-fix", with_corrected=True))]
    LabelFactory(steps=corrected, finish_reason="found_error")
    paused, failed = annotator(), annotator()
    AnnotatorProfile.objects.filter(user=paused).update(is_paused=True)
    AnnotatorProfile.objects.filter(user=failed).update(screening_passed=False)
    for user, text in ((paused, "paused"), (failed, "failed")):
        LabelFactory(
            annotator=user,
            labeler=user.annotator_profile.labeler,
            steps=[_s([_c(text, 1)])],
            finish_reason="solution",
        )
    default = [("a", "b"), ("a", "b-alt"), ("c",), ("d", "e"), ("d", "e-fix")]
    return {
        "": default,
        "trajectories_only": [("a", "b"), ("c",), ("d", "e")],
        "include_flagged": [("a", "b"), ("a", "b-alt"), ("c", "f"), ("d", "e"), ("d", "e-fix")],
        "include_unreliable": sorted([*default, ("failed",), ("paused",)]),
        "exclude_human_completions": [("a", "b"), ("a", "b-alt"), ("c",), ("d", "e")],
    }


STEPWISE_OPTIONS = [
    "",
    "trajectories_only",
    "include_flagged",
    "include_unreliable",
    "exclude_human_completions",
]


def row_completions(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The completions of TRL rows, sorted: what ``stepwise_option_labels`` predicts."""
    return sorted(tuple(row["completions"]) for row in rows)
