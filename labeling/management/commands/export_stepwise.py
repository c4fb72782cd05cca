"""``manage.py export_stepwise``: labels in TRL's stepwise-supervision format, streamed."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from labeling.management.commands._export_common import (
    add_filter_arguments,
    filters_from_options,
    open_output,
    progress_bar,
)
from labeling.services.export import stepwise_export


class Command(BaseCommand):
    help = (
        'Export labels as TRL stepwise supervision, one {"prompt", "completions", "labels"} '
        "row per rated branch. Per label: first its chosen trajectory, up to and including its "
        "first negative step; then one row per rated alternative completion (PRM800K phase 1's "
        "alternatives, the ones rated at phase 2's error step): the trajectory's steps before "
        "it, with their labels, then that completion with its label. A step the labeler wrote "
        "is labeled true (a correction at an error step is a row of its own) unless "
        "--exclude-human-completions; branches after a negative step are left out. By "
        "default labels of annotators who failed screening or are paused, and flagged steps, "
        "are left out."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_filter_arguments(parser)
        parser.add_argument(
            "--neutral",
            choices=["positive", "negative"],
            default="positive",
            help="how a neutral (0) step is labeled (default: positive, as in the paper)",
        )
        parser.add_argument(
            "--trajectories-only",
            action="store_true",
            help="one row per label, its chosen trajectory only (no alternative completions)",
        )
        parser.add_argument(
            "--include-flagged",
            action="store_true",
            help="keep flagged steps as targets (default: a row ends before a flagged step)",
        )
        parser.add_argument(
            "--include-unreliable",
            action="store_true",
            help="keep labels of annotators who failed screening or are paused",
        )
        parser.add_argument(
            "--exclude-human-completions",
            action="store_true",
            help="leave out steps the labeler wrote (default: each is labeled true, a phase-2 "
            "correction a row of its own)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        filters = filters_from_options(options)
        with (
            progress_bar(filters, options["verbosity"]) as on_progress,
            open_output(options["output"]) as out,
        ):
            written = stepwise_export(
                out=out,
                filters=filters,
                neutral=options["neutral"],
                trajectories_only=options["trajectories_only"],
                include_flagged=options["include_flagged"],
                include_unreliable=options["include_unreliable"],
                exclude_human_completions=options["exclude_human_completions"],
                on_progress=on_progress,
            )
        self.stderr.write(f"exported {written} rows")
