from typing import Any

from django.core.management.base import CommandParser

from jobs.models import JobKind
from selector.management.commands._selector_job import SelectorJobCommand


class Command(SelectorJobCommand):
    help = "Score every candidate solution the selector version has not scored yet."
    kind = JobKind.SCORE

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument("--selector", help="version name or id (default: the active one)")

    def handle(self, *args: Any, **options: Any) -> None:
        version = self.version_arg(options["selector"], required=True)
        self.run_job(options, params={}, version=version)
