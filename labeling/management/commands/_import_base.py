"""What the three JSONL import commands share: arguments, progress bars, errors, grading."""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labeling.services.grading import answers_grade, ungraded_solutions_count
from labeling.services.imports import ImportFailed, ImportReport
from labeling.services.jsonl import jsonl_open

ImportService = Callable[..., ImportReport]


class JsonlImportCommand(BaseCommand):
    service: ImportService
    what = "records"
    grades = True  # whether a --no-grade flag applies

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", help="JSONL file to import, or - for stdin")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the valid lines and list the invalid ones (default: import nothing "
            "if any line is invalid)",
        )
        parser.add_argument("--batch-size", type=int, default=2000)
        if self.grades:
            parser.add_argument(
                "--no-grade", action="store_true", help="do not grade final answers afterwards"
            )

    def handle(self, *args: Any, **options: Any) -> None:
        show_progress = options["verbosity"] > 0
        with jsonl_open(options["file"]) as (stream, name, size):
            report = self._import(stream, name, size, options, show_progress)
        for line in report.error_lines():
            self.stderr.write(line)
        self.stdout.write(report.summary())
        if self.grades and not options["no_grade"] and report.problem_ids:
            self._grade(report, show_progress)

    def _import(
        self,
        stream: IO[bytes],
        name: str,
        size: int | None,
        options: dict[str, Any],
        show_progress: bool,
    ) -> ImportReport:
        # tqdm writes to stderr; by bytes so it has a total when the file size is known.
        with tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"importing {self.what}",
            disable=not show_progress,
        ) as bar:
            try:
                return type(self).service(
                    stream=stream,
                    source=name,
                    skip_invalid=options["skip_invalid"],
                    progress=bar.update,
                    batch_size=options["batch_size"],
                )
            except ImportFailed as exc:
                bar.close()
                for line in exc.report.error_lines():
                    self.stderr.write(line)
                raise CommandError(str(exc)) from None

    def _grade(self, report: ImportReport, show_progress: bool) -> None:
        # A big import touches most problems: grading everything ungraded is the same work
        # without a huge IN list.
        ids = sorted(report.problem_ids) if len(report.problem_ids) <= 1000 else None
        total = ungraded_solutions_count(problem_ids=ids)
        with tqdm(
            total=total, unit="solution", desc="grading answers", disable=not show_progress
        ) as bar:
            grading = answers_grade(problem_ids=ids, progress=bar.update)
        self.stdout.write(grading.summary())
