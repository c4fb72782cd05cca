from typing import Any

from django.core.management.base import CommandError, CommandParser

from jobs.models import JobKind
from selector import services
from selector.management.commands._selector_job import SelectorJobCommand


class Command(SelectorJobCommand):
    help = "Train a new selector version on the labels so far (or create an untrained base one)."
    kind = JobKind.TRAIN

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument("--epochs", type=int, default=3)
        parser.add_argument("--name", help="version name (default: v-<timestamp>)")
        parser.add_argument(
            "--from-version", help="start from this version (default: the active one)"
        )
        parser.add_argument(
            "--base",
            action="store_true",
            help="create an untrained PRM from the base model instead (active if none is)",
        )
        parser.add_argument("--base-model", help="local HF model dir for --base")
        # Label hygiene (docs/decisions/0008-prm800k-record-shapes.md); shown in the summary.
        parser.add_argument(
            "--include-unreliable",
            action="store_true",
            help="keep labels of annotators who failed screening or are paused",
        )
        parser.add_argument(
            "--no-combine",
            action="store_true",
            help="one example per label even where several labeled one task (default: majority)",
        )
        parser.add_argument(
            "--include-flagged", action="store_true", help="train on flagged steps too"
        )
        parser.add_argument(
            "--exclude-human-completions",
            action="store_true",
            help="a step the labeler wrote is context, not a positive example (the default)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["base"]:
            try:
                version = services.selector_create_base(
                    base_model=options["base_model"], name=options["name"]
                )
            except services.SelectorError as exc:
                raise CommandError(str(exc)) from exc
            state = "active" if version.is_active else "not active"
            self.stdout.write(self.style.SUCCESS(f"created {version.name} ({state})"))
            return
        params: dict[str, Any] = {
            "epochs": options["epochs"],
            "exclude_unreliable": not options["include_unreliable"],
            "combine_overlaps": not options["no_combine"],
            "include_flagged": options["include_flagged"],
            "exclude_human_completions": options["exclude_human_completions"],
        }
        if options["name"]:
            params["name"] = options["name"]
        if options["from_version"]:
            base = self.version_arg(options["from_version"], required=True)
            assert base is not None
            params["base_version_id"] = base.pk
        self.run_job(options, params=params)
