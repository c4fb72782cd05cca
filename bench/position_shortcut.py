"""Position shortcut: does a PRM learn *where* the phase-2 error sits instead of *what* it says?

Step labels here are unrelated to step content: each rated step is negative with a fixed
probability, rating stops at the first negative (phase-2 shape), and training sees the rated
prefix only, as the service does. The negative is then always the last rated step, and a
solution that ends without ``# Answer`` always ends in a negative. A model that reads the steps
after a position (a bidirectional encoder) can learn that cue; a causal one cannot, since a
constant per-step hazard leaves nothing in a prefix that predicts its next label.

Held-out steps (split by problem) are scored two ways: the rated prefix only (what evaluation
did before) and the whole candidate solution (what pool scoring sees). Honest models sit at
AUROC ~0.5 on both. Run: ``PYTHONPATH=. .venv/bin/python bench/position_shortcut.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORDS = ["so", "then", "we", "get", "hence", "note", "the", "sum", "is", "x", "and", "value"]


def random_label_solutions(
    n_problems: int, per_problem: int, *, hazard: float, seed: int
) -> list[dict[str, Any]]:
    """Whole solutions with phase-2 ratings drawn independently of the text."""
    rng = random.Random(seed)
    out = []
    for p in range(n_problems):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        problem = f"Problem {p}: what is {a} + {b}?"
        for _ in range(per_problem):
            steps = [
                " ".join(rng.choices(WORDS, k=rng.randint(4, 9))) + f" {rng.randint(0, 99)}."
                for _ in range(rng.randint(2, 7))
            ]
            steps.append(f"# Answer\n\n{a + b + rng.choice([0, 0, 1])}")
            ratings: list[int] = []
            for _ in steps:
                if rng.random() < hazard:
                    ratings.append(-1)
                    break
                ratings.append(rng.choice([1, 1, 0]))
            out.append({"key": f"p{p}", "problem": problem, "steps": steps, "ratings": ratings})
    return out


def held_out_auroc(prm: Path, held_out: list[dict[str, Any]]) -> dict[str, Any]:
    from selector.ml.metrics import step_metrics
    from selector.ml.scoring import Scorer

    scorer = Scorer.load(prm, device="cpu")
    ratings = [r for s in held_out for r in s["ratings"]]
    out: dict[str, Any] = {}
    for view in ("rated_prefix", "whole_solution"):
        items = [
            (
                s["problem"],
                s["steps"][: len(s["ratings"])] if view == "rated_prefix" else s["steps"],
            )
            for s in held_out
        ]
        start = time.perf_counter()
        results = scorer.score(items)
        out[f"{view}_seconds"] = round(time.perf_counter() - start, 3)
        scores = [
            x
            for s, r in zip(held_out, results, strict=True)
            for x in r.step_scores[: len(s["ratings"])]
        ]
        out[view] = step_metrics(scores, ratings)["auroc"]
    out["negatives"] = ratings.count(-1)
    out["steps"] = len(ratings)
    return out


def bidirectional_copy(prm: Path, out: Path) -> Path:
    """The same PRM with BERT's full attention back (what Stepwise shipped before 0005)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(prm, is_decoder=False)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(prm).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=80)
    parser.add_argument("--per-problem", type=int, default=4)
    parser.add_argument("--hazard", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="causal,bidirectional")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from selector.ml.prm import default_base_model, prm_init
    from selector.ml.training import TrainExample, split_by_problem, train

    data = random_label_solutions(
        args.problems, args.per_problem, hazard=args.hazard, seed=args.seed
    )
    _, eval_keys = split_by_problem({s["key"] for s in data}, eval_fraction=0.3, seed=args.seed)
    train_set = [s for s in data if s["key"] not in eval_keys]
    held_out = [s for s in data if s["key"] in eval_keys]
    examples = [
        TrainExample(
            problem=s["problem"], steps=s["steps"][: len(s["ratings"])], ratings=s["ratings"]
        )
        for s in train_set
    ]
    figures: dict[str, Any] = {
        "train_solutions": len(train_set),
        "held_out_solutions": len(held_out),
    }
    with tempfile.TemporaryDirectory(prefix="stepwise-shortcut-") as tmp:
        causal = Path(tmp) / "causal"
        prm_init(base_model=default_base_model(), output_dir=causal)
        variants = {"causal": causal, "bidirectional": bidirectional_copy(causal, Path(tmp) / "bi")}
        for name, init in variants.items():
            if name not in args.variants.split(","):
                continue
            out = Path(tmp) / f"{name}-trained"
            summary = train(
                init_from=init,
                examples=examples,
                output_dir=out,
                epochs=args.epochs,
                learning_rate=args.lr,
                seed=args.seed,
                device="cpu",
            )
            figures[name] = {
                "train_seconds": summary["seconds"],
                "final_loss": summary["epoch_loss"][-1],
                **held_out_auroc(out, held_out),
            }
            print(name, json.dumps(figures[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
