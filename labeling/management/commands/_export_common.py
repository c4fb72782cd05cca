"""Arguments and output handling shared by the export commands."""

import sys
from argparse import ArgumentParser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.core.management.base import CommandError
from tqdm import tqdm

from labeling.services.export import ExportFilters, labels_for_export, parse_since


def add_filter_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", default="-", help="file to write (default: - for standard output)"
    )
    parser.add_argument("--generation", type=int, help="only labels of this queue round")
    parser.add_argument(
        "--since", help="only labels made at or after this date (YYYY-MM-DD or ISO-8601, UTC)"
    )
    parser.add_argument("--include-qc", action="store_true", help="include quality-control labels")
    parser.add_argument("--include-screening", action="store_true", help="include screening labels")


def filters_from_options(options: dict[str, Any]) -> ExportFilters:
    try:
        since = parse_since(options["since"]) if options.get("since") else None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return ExportFilters(
        generation=options.get("generation"),
        since=since,
        include_qc=options["include_qc"],
        include_screening=options["include_screening"],
    )


@contextmanager
def open_output(target: str) -> Iterator[IO[bytes]]:
    """Standard output, or a file written beside its final name and renamed when complete."""
    if target == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    if not path.parent.is_dir():
        raise CommandError(f"output: directory {path.parent} does not exist")
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb", buffering=1 << 20) as out:
            yield out
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def progress_bar(filters: ExportFilters, verbosity: int) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr (labels read / total); silent with --verbosity 0."""
    total = labels_for_export(filters=filters).count() if verbosity > 0 else None
    with tqdm(total=total, unit=" labels", desc="exporting", disable=verbosity == 0) as bar:

        def update(done: int) -> None:
            bar.update(done - bar.n)

        yield update
