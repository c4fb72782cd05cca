import json
from typing import Any

from django.core.management.base import CommandParser

from jobs.models import Job, JobKind
from selector.management.commands._selector_job import SelectorJobCommand
from selector.queries import metrics_table


class Command(SelectorJobCommand):
    help = "Evaluate a selector version on the frozen held-out set, beside the active one."
    kind = JobKind.EVALUATE

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument("--selector", help="version name or id (default: the active one)")
        parser.add_argument("--json", action="store_true", help="print the metrics as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        version = self.version_arg(options["selector"], required=True)
        self.run_job(options, params={}, version=version)
        if options["sync"] or options["wait"]:
            assert version is not None
            version.refresh_from_db()
            if options["json"]:
                self.stdout.write(json.dumps(version.metrics, indent=2))
                return
            other = version.metrics.get("compared_with")
            other_name = other["version"] if other else "-"
            self.stdout.write(f"{'metric':40} {version.name:>12} {other_name:>12}")
            for label, mine, theirs in metrics_table(metrics=version.metrics, other=other):
                self.stdout.write(f"{label:40} {mine:>12} {theirs:>12}")

    def summary(self, job: Job) -> str:
        return f"version {job.version}"
