from typing import Any

from django.core.management.base import CommandParser

from jobs.models import JobKind
from selector.management.commands._selector_job import SelectorJobCommand


class Command(SelectorJobCommand):
    help = "Make a version active, rescore the pool with it and re-prioritise untouched tasks."
    kind = JobKind.PROMOTE

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument("--selector", required=True, help="version name or id")

    def handle(self, *args: Any, **options: Any) -> None:
        version = self.version_arg(options["selector"], required=True)
        self.run_job(options, params={}, version=version)
