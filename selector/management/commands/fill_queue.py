from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from jobs.models import JobKind
from selector.management.commands._selector_job import SelectorJobCommand
from selector.services.queue_fill import FILL_RULES


class Command(SelectorJobCommand):
    help = "Queue K candidates per problem by a selection rule, scored by the active selector."
    kind = JobKind.FILL

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument(
            "--per-problem", type=int, help=f"K (default {settings.SELECTOR_PER_PROBLEM})"
        )
        parser.add_argument(
            "--wrong-fraction",
            type=float,
            help=f"share of wrong-answer picks (default {settings.SELECTOR_WRONG_FRACTION})",
        )
        parser.add_argument("--generation", type=int, help="default: start a new generation")
        parser.add_argument(
            "--rule",
            choices=FILL_RULES,
            help=f"selection rule (default {settings.SELECTOR_RULE}); uncertainty and mixed"
            " need a version trained here with an ensemble",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        params = {
            key: options[key]
            for key in ("per_problem", "wrong_fraction", "generation", "rule")
            if options[key] is not None
        }
        self.run_job(options, params=params)
