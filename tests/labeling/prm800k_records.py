"""A generator of PRM800K records covering the format's corners, and a loader for the tests."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from labeling.services.imports import prm800k_import

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
