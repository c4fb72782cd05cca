import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from jobs.models import Job, JobKind
from selector.management.commands._selector_job import SelectorJobCommand
from selector.queries import metrics_table
from selector.services import SelectorError
from selector.services.benchmark import benchmark_evaluate
from selector.services.eval_set import eval_set_freeze


class Command(SelectorJobCommand):
    help = (
        "Evaluate a selector version on the frozen evaluation set, beside the active one; "
        "or, with --benchmark FILE, on a ProcessBench / PRM800K JSONL file (ProcessBench F1)."
    )
    kind = JobKind.EVALUATE

    def add_base_argument(self, parser: CommandParser, *args: Any, **kwargs: Any) -> None:
        # Here --version names the selector version to evaluate; Django's "print the Django
        # version" flag is left out of this one command.
        if "--version" not in args:
            super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument(
            "--selector", "--version", help="version name or id (default: the active one)"
        )
        parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
        parser.add_argument(
            "--new-eval-set",
            action="store_true",
            help="freeze a new version of the evaluation set (every evaluation label so far) "
            "first; metrics compare only within one set",
        )
        parser.add_argument(
            "--benchmark", type=Path, help="a ProcessBench or PRM800K JSONL file (runs here)"
        )
        parser.add_argument(
            "--predictions", type=Path, help="with --benchmark: write per-item predictions here"
        )
        parser.add_argument(
            "--threshold",
            type=float,
            default=0.5,
            help="with --benchmark: a step scoring below this is predicted wrong (default 0.5)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        version = self.version_arg(options["selector"], required=True)
        assert version is not None
        if options["benchmark"] is not None:
            self.benchmark(options, version)
            return
        if options["predictions"] is not None:
            raise CommandError("--predictions needs --benchmark FILE")
        if options["new_eval_set"]:
            frozen = eval_set_freeze()
            self.stdout.write(f"froze {frozen} on {frozen.problems} problems")
        self.run_job(options, params={}, version=version)
        if options["sync"] or options["wait"]:
            version.refresh_from_db()
            if options["json"]:
                self.stdout.write(json.dumps(version.metrics, indent=2))
                return
            other = version.metrics.get("compared_with")
            other_name = other["version"] if other else "-"
            self.stdout.write(f"{'metric':40} {version.name:>12} {other_name:>12}  difference")
            for label, mine, theirs, diff in metrics_table(metrics=version.metrics, other=other):
                self.stdout.write(f"{label:40} {mine:>12} {theirs:>12}  {diff}")

    def benchmark(self, options: dict[str, Any], version: Any) -> None:
        try:
            result = benchmark_evaluate(
                version=version,
                path=options["benchmark"],
                threshold=options["threshold"],
                predictions=options["predictions"],
            )
        except SelectorError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        for key in ("benchmark", "format", "version", "items", "f1", "threshold", "f1_tuned",
                    "threshold_tuned", "acc_erroneous",
                    "acc_correct", "n_erroneous", "n_correct", "skipped", "truncated",
                    "undecided"):  # fmt: skip
            self.stdout.write(f"{key:16} {result[key]}")

    def summary(self, job: Job) -> str:
        return f"version {job.version}"
