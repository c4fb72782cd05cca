"""One round of the Stepwise loop from a script, through the client only: import problems and
candidates, score and fill the queue, label (as an annotator, through the annotator API),
train, evaluate, promote, export.

    python client/examples/pipeline.py --url http://127.0.0.1:8000 \\
        --token STAFF_TOKEN --annotator-token ANNOTATOR_TOKEN --out exports/

The problems are made-up sums and the "annotator" rates by the ground truth, so the round
runs anywhere in a minute or two; put your own files and people in their places.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from stepwise_client import Stepwise

SUMS = [(7 * i + 3, 11 * i + 5) for i in range(100)]


def sum_problems(n: int) -> list[dict[str, Any]]:
    return [
        {
            "problem": f"What is {a} + {b}?",
            "solution": f"{a} + {b} = {a + b}.",
            "answer": str(a + b),
            "subject": "Prealgebra",
            "level": 1,
            "unique_id": f"pipeline/sums/{i}.json",
        }
        for i, (a, b) in enumerate(SUMS[:n])
    ]


def sum_candidates(n: int, per_problem: int) -> list[dict[str, Any]]:
    """Per problem, some right and some wrong solutions, PRM800K-shaped: one step a line, the
    last ``# Answer`` and the final answer."""
    rng = random.Random(0)
    candidates = []
    for i, (a, b) in enumerate(SUMS[:n]):
        slips = iter(rng.sample([-10, -2, -1, 1, 2, 10], k=per_problem))
        for k in range(per_problem):
            total = a + b if k % 3 == 0 else a + b + next(slips)
            opening = f"We add {a} and {b}." if k % 2 else f"Adding {b} to {a}."
            steps = [opening, f"The sum is {total}.", f"# Answer\n\n{total}"]
            candidates.append(
                {"unique_id": f"pipeline/sums/{i}.json", "steps": steps, "generator": "example"}
            )
    return candidates


def rate(task: dict[str, Any]) -> tuple[list[int], str]:
    """A stand-in annotator that knows the ground truth: every step is fine up to the first
    one that states a wrong final answer, which is the error (phase-2: rating stops there)."""
    answer = task["steps"][-1].split("# Answer")[-1].strip()
    if answer == task["ground_truth_answer"].strip():
        return [1] * len(task["steps"]), "solution"
    wrong = next(i for i, step in enumerate(task["steps"]) if answer in step)
    return [1] * wrong + [-1], "found_error"


def run(
    url: str,
    token: str,
    annotator_token: str,
    out: Path,
    problems: int = 12,
    labels: int = 100,
    learning_rate: float = 5e-5,
) -> dict[str, Any]:
    staff = Stepwise(url, token)
    annotator = Stepwise(url, annotator_token)
    staff.wait(staff.import_problems(sum_problems(problems)))
    staff.wait(staff.import_candidates(sum_candidates(problems, per_problem=6)))

    # The first round needs a selector to rank candidates: an untrained base model will do.
    if not any(v["is_active"] for v in staff.versions()):
        staff.wait(staff.train(base=True))
    staff.wait(staff.score())
    filled = staff.wait(staff.fill(per_problem=4))
    print(f"queued {filled.result['created']} tasks (+{filled.result['eval_created']} for eval)")

    labeled = 0  # at most ``labels``: a server whose beat tops the queue up never runs dry
    while labeled < labels and (task := annotator.next_task()) is not None:
        ratings, finish_reason = rate(task)
        annotator.submit_label(task, ratings=ratings, finish_reason=finish_reason)
        labeled += 1
    print(f"labeled {labeled} tasks")

    trained = staff.wait(staff.train(epochs=2, learning_rate=learning_rate))
    version = trained.result["version"]
    staff.wait(staff.evaluate(version))
    row = next(v for v in staff.versions() if v["name"] == version)
    for metric, value in row["metrics"].items():
        span = row["intervals"].get(metric)
        vs = f" vs {row['compared_with']}: {span['verdict']}" if span else ""
        print(f"{version} {metric} = {value}{vs}")
    # Refused (APIError naming "force") if the evaluation found it clearly worse.
    staff.wait(staff.promote(version))

    out.mkdir(parents=True, exist_ok=True)
    exports = {
        "prm800k": staff.export_prm800k(out / "prm800k.jsonl"),
        "stepwise": staff.export_stepwise(out / "stepwise.jsonl", neutral="positive"),
    }
    return {"labeled": labeled, "version": version, "exports": exports}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="a staff user's API token")
    parser.add_argument("--annotator-token", required=True, help="an annotator's API token")
    parser.add_argument("--out", type=Path, default=Path("exports"))
    args = parser.parse_args()
    print(run(args.url, args.token, args.annotator_token, args.out))
