"""``manage.py export_prm800k``: labels as PRM800K JSONL, streamed."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from labeling.management.commands._export_common import (
    add_filter_arguments,
    filters_from_options,
    open_output,
    progress_bar,
)
from labeling.services.export import prm800k_export


class Command(BaseCommand):
    help = "Export labels in the PRM800K JSONL format (QC and screening only when asked)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_filter_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        filters = filters_from_options(options)
        with (
            progress_bar(filters, options["verbosity"]) as on_progress,
            open_output(options["output"]) as out,
        ):
            written = prm800k_export(out=out, filters=filters, on_progress=on_progress)
        self.stderr.write(f"exported {written} labeled solutions")
