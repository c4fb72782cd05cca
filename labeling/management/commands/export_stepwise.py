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
        'Export labels as TRL stepwise supervision: {"prompt", "completions", "labels"} per '
        "labeled solution, up to its first negative step."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_filter_arguments(parser)
        parser.add_argument(
            "--neutral",
            choices=["positive", "negative"],
            default="positive",
            help="how a neutral (0) step is labeled (default: positive, as in the paper)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        filters = filters_from_options(options)
        with (
            progress_bar(filters, options["verbosity"]) as on_progress,
            open_output(options["output"]) as out,
        ):
            written = stepwise_export(
                out=out, filters=filters, neutral=options["neutral"], on_progress=on_progress
            )
        self.stderr.write(f"exported {written} trajectories")
