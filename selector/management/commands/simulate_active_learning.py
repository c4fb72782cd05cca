"""Measure what each selection rule buys over uniform labeling, on a simulated annotator.

See the README section "Simulating active learning" for the arms, presets and report schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from selector.simulation.pool import PoolError
from selector.simulation.report import RULE_COMPARISONS
from selector.simulation.runner import (
    ARMS,
    PRESETS,
    SimulationError,
    config_for,
    simulation_run,
)
from selector.simulation.worker import worker_main


class Command(BaseCommand):
    help = (
        "Simulate active learning (80/20, uncertainty and mixed against uniform and two "
        "controls) in throw-away databases."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--preset", choices=sorted(PRESETS), default="ci")
        parser.add_argument("--pool", help="'synthetic' (default) or a JSONL file")
        parser.add_argument("--arms", help=f"comma-separated, from {', '.join(ARMS)}")
        parser.add_argument("--rounds", type=int)
        parser.add_argument(
            "--labels-per-round",
            type=int,
            help="K per problem becomes round(N / training problems), at least 1",
        )
        parser.add_argument("--seeds", type=int)
        parser.add_argument("--problems", type=int)
        parser.add_argument("--candidates", type=int)
        parser.add_argument(
            "--base-model",
            help="'tiny', 'minilm', 'pretrained', 'pretrained-surprise' or a local model directory",
        )
        parser.add_argument("--pretrain-problems", type=int, help="texts to pretrain a base on")
        parser.add_argument("--pretrain-epochs", type=int)
        parser.add_argument(
            "--ensemble-heads", type=int, help="step heads per trained version (default 5)"
        )
        parser.add_argument("--device")
        parser.add_argument("--jobs", type=int, help="arm x seed runs in parallel")
        parser.add_argument("--flip-rate", type=float)
        parser.add_argument("--neutral-rate", type=float)
        parser.add_argument("--bias", type=float)
        parser.add_argument(
            "--held-out-fraction", type=float, help="share of problems held out for evaluation"
        )
        parser.add_argument("--metric", choices=["step_auroc", "f1"])
        parser.add_argument("--warm-start", action="store_true", default=None)
        parser.add_argument("--keep", action="store_true", help="keep the work directory")
        parser.add_argument("--out", type=Path)
        # Internal: one arm x seed (or the template) inside its throw-away database.
        parser.add_argument("--worker-spec", type=Path, help=argparse_suppress())

    def handle(self, *args: Any, **options: Any) -> None:
        if options["worker_spec"]:
            worker_main(options["worker_spec"])
            return
        if options["out"] is None:
            raise CommandError("--out DIR is required")
        try:
            config = config_for(
                options["preset"],
                pool=options["pool"],
                arms=options["arms"].split(",") if options["arms"] else None,
                rounds=options["rounds"],
                seeds=options["seeds"],
                problems=options["problems"],
                candidates=options["candidates"],
                base_model=options["base_model"],
                pretrain_problems=options["pretrain_problems"],
                pretrain_epochs=options["pretrain_epochs"],
                device=options["device"],
                jobs=options["jobs"],
                flip_rate=options["flip_rate"],
                neutral_rate=options["neutral_rate"],
                bias=options["bias"],
                held_out_fraction=options["held_out_fraction"],
                metric=options["metric"],
                warm_start=options["warm_start"],
                labels_per_round=options["labels_per_round"],
                ensemble_heads=options["ensemble_heads"],
            )
            result = simulation_run(
                config=config,
                out_dir=options["out"],
                keep=options["keep"],
                echo=lambda message: self.stdout.write(message),
            )
        except (SimulationError, PoolError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        for key in ("data_efficiency", "data_efficiency_prm", *(c[0] for c in RULE_COMPARISONS)):
            de = result.get(key) or {}
            if not de:
                continue
            bound = {"above": " (a lower bound)", "below": " (an upper bound)"}.get(
                de["censored"] or "", ""
            )
            self.stdout.write(
                f"{key}: {de['arms'][0]} vs {de['arms'][1]} on {de['metric']}: ratio "
                f"{_fmt(de['ratio'])}{bound}, 95% CI {_fmt(de['ci95'][0])} to "
                f"{_fmt(de['ci95'][1])}"
            )
        ceiling = result.get("ceiling")
        if ceiling:
            self.stdout.write(
                f"ceiling (uniform, {ceiling['labels']:.0f} labels): step AUROC "
                f"{_fmt(ceiling['step_auroc'])}, F1 {_fmt(ceiling['f1'])} at 0.5, "
                f"{_fmt(ceiling.get('f1_tuned'))} at the held-in threshold"
            )
        self.stdout.write(f"{result['seconds']:.0f} s; report in {options['out'] / 'report.json'}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS
