from typing import Any

from django.core.management.base import CommandError, CommandParser

from jobs.models import JobKind
from selector.management.commands._selector_job import SelectorJobCommand
from selector.services.promotion import promotion_check


class Command(SelectorJobCommand):
    help = (
        "Make a version active, rescore the pool with it and re-prioritise untouched tasks. "
        "Refused when its evaluation found it clearly worse than the active version, unless "
        "--force."
    )
    kind = JobKind.PROMOTE

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument("--selector", required=True, help="version name or id")
        parser.add_argument(
            "--force",
            action="store_true",
            help="promote even a version its evaluation found clearly worse than the active one",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        version = self.version_arg(options["selector"], required=True)
        assert version is not None
        check = promotion_check(version=version)
        if check.needs_force and not options["force"]:
            raise CommandError(f"{check.message} Pass --force to promote it anyway.")
        self.stdout.write(f"verdict: {check.verdict}. {check.message}")
        self.run_job(options, params={}, version=version)
