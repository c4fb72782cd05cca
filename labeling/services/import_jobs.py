"""Imports as background jobs: a JSONL file sent to the API, imported by a worker.

The file is spooled to ``IMPORT_UPLOAD_DIR`` by the request (never held in memory whole), then
``import_job_start`` keeps it and queues an ``import`` job, whose worker runs the same importer
as the command and the admin (one transaction: all or nothing unless ``skip_invalid``), then
grades the new final answers. Invalid lines are the job's errors, ``{"line", "field",
"message"}`` (``jobs.queries.RESULT_ERRORS``).

Sending the same bytes again (same format, same ``skip_invalid``) returns the job that
imported them, or is importing them, instead of starting another; after a failed or
cancelled one it starts afresh. A second run would change nothing anyway: every importer
deduplicates (problems by ``unique_id``, candidates by their text, labels by their record).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction

from jobs.models import Job, JobKind, JobStatus
from jobs.params import JobParams, bounded
from jobs.queries import RESULT_ERRORS
from jobs.services import DetachedProgress, JobProgress, job_create, job_run
from labeling import permissions
from labeling.services.grading import answers_grade, ungraded_solutions_count
from labeling.services.imports import (
    ImportFailed,
    ImportReport,
    candidates_import,
    prm800k_import,
    problems_import,
)

IMPORTERS = {
    "problems": problems_import,
    "candidates": candidates_import,
    "prm800k": prm800k_import,
}
FORMATS = tuple(IMPORTERS)
# A job row stays small: a file of a million bad lines reports the first ones and the count.
MAX_STORED_ERRORS = 1000
FILENAME_LENGTH = 200
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _under_upload_dir(value: str) -> None:
    root = Path(settings.IMPORT_UPLOAD_DIR).resolve()
    if not Path(value).resolve().is_relative_to(root):
        raise ValueError("must be a file the import API spooled (under IMPORT_UPLOAD_DIR)")


def _sha256(value: str) -> None:
    if not _SHA256.fullmatch(value):
        raise ValueError("must be 64 lowercase hex digits")


@dataclass(frozen=True)
class ImportParams(JobParams):
    format: str = bounded(choices=FORMATS)
    path: str = bounded(max_length=1000, check=_under_upload_dir)  # the spooled file
    sha256: str = bounded(check=_sha256)  # of its bytes: what makes a re-send idempotent
    filename: str = bounded("upload.jsonl", max_length=FILENAME_LENGTH)  # named in errors
    skip_invalid: bool = False


_PERMISSIONS = {
    "problems": permissions.IMPORT_PROBLEMS,
    "candidates": permissions.IMPORT_CANDIDATES,
    "prm800k": permissions.IMPORT_LABELS,
}


def import_permission(*, job: Job) -> str:
    """The jobs registry's hook: the permission that starts (and retries) this import."""
    return _PERMISSIONS.get(str((job.params or {}).get("format")), permissions.IMPORT_LABELS)


@dataclass(frozen=True)
class ImportStarted:
    job: Job
    created: bool  # False: the same file's job was already there, and is returned


def upload_filename(name: str | None) -> str:
    """The name errors and the job show: the sender's base name, short, or a default."""
    base = Path((name or "").replace("\\", "/")).name
    printable = "".join(ch for ch in base if ch.isprintable()).strip()
    return printable[:FILENAME_LENGTH] or "upload.jsonl"


def import_job_start(
    *,
    spooled: Path,
    sha256: str,
    import_format: str,
    filename: str,
    skip_invalid: bool = False,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> ImportStarted:
    """Queue an import of ``spooled`` (a file under ``IMPORT_UPLOAD_DIR`` whose bytes hash to
    ``sha256``), or return the job already importing, or done importing, the same bytes.

    The file is kept (moved beside the others) only when a job is created; otherwise the
    caller discards it. Bad parameters raise ``JobParamsInvalid`` naming the field.
    """
    folder = Path(settings.IMPORT_UPLOAD_DIR)
    with transaction.atomic():
        if user is not None and user.is_authenticated:
            # The sender's row is the lock: two simultaneous sends of one file start one job.
            list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk"))
        same = (
            Job.objects.filter(
                kind=JobKind.IMPORT,
                params__format=import_format,
                params__sha256=sha256,
                params__skip_invalid=skip_invalid,
            )
            .exclude(status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
            .order_by("-pk")
            .first()
        )
        if same is not None:
            return ImportStarted(job=same, created=False)
        kept = folder / f"{sha256[:16]}-{uuid.uuid4().hex}.jsonl"
        job = job_create(
            kind=JobKind.IMPORT,
            user=user,
            params={
                "format": import_format,
                "path": str(kept),
                "sha256": sha256,
                "filename": upload_filename(filename),
                "skip_invalid": skip_invalid,
            },
        )
        # After the row is written (a refused parameter leaves no file behind) and before the
        # commit sends the task; a failed move rolls the job back.
        os.replace(spooled, kept)
    return ImportStarted(job=job, created=True)


def import_abandoned(*, job: Job) -> None:
    """The jobs registry's hook for an import finished without its worker (cancelled, marked
    failed, lost): its spooled file goes with it (a lost worker's transaction rolled back)."""
    raw = (job.params or {}).get("path")
    if not isinstance(raw, str) or not raw:
        return
    try:
        _under_upload_dir(raw)
    except ValueError:
        return  # not a file an upload kept: never removed
    Path(raw).unlink(missing_ok=True)


def import_job_run(*, job_id: int) -> Job:
    """Run an import job in this process (``jobs.services.job_run``: status, heartbeat)."""
    return job_run(job_id=job_id, runner=_import_and_grade)


class ImportRefused(Exception):
    """Invalid lines and no ``skip_invalid``: nothing was imported; the lines are the job's
    errors."""


def _errors(report: ImportReport) -> dict[str, Any]:
    errors = sorted(report.errors)
    return {
        RESULT_ERRORS: [
            {"line": e.line, "field": e.field, "message": e.message}
            for e in errors[:MAX_STORED_ERRORS]
        ],
        "errors_total": len(errors),
    }


def _import_and_grade(job: Job, _progress: JobProgress) -> dict[str, Any]:
    """Import the job's file (one transaction), then grade the answers it brought.

    Progress runs in KiB of the file, then grading on as many units again, so the bar only
    moves forward; it is written from a side thread (``DetachedProgress``), the import's
    transaction being open all along.
    """
    params = ImportParams.parse(job.params)
    path = Path(params.path)
    if not path.exists():
        raise FileNotFoundError(
            f"{params.filename}: the uploaded file is gone from the upload folder; send it again"
        )
    units = max(1, -(-path.stat().st_size // 1024))
    read = 0
    with DetachedProgress(job) as progress:

        def bytes_read(n: int) -> None:
            nonlocal read
            read += n
            progress(min(units, read // 1024), 2 * units)

        progress(0, 2 * units)
        try:
            with path.open("rb") as stream:
                report = IMPORTERS[params.format](
                    stream=stream,
                    source=params.filename,
                    skip_invalid=params.skip_invalid,
                    progress=bytes_read,
                )
        except ImportFailed as failed:
            Job.objects.filter(pk=job.pk).update(result=_errors(failed.report))
            path.unlink(missing_ok=True)  # the same bytes would fail the same way
            raise ImportRefused(
                f"{len(failed.report.errors)} invalid line(s) in {params.filename}; nothing "
                "was imported (send skip_invalid=true to import the valid lines)"
            ) from None
        path.unlink(missing_ok=True)
        result: dict[str, Any] = {
            "format": params.format,
            "source": params.filename,
            "lines": report.lines,
            "imported": report.imported,
            "created": report.created,
            "updated": report.updated,
            "summary": report.summary(),
            **_errors(report),
        }
        progress(units, 2 * units)
        # As the import command does: visit the problems it touched, or, past a thousand,
        # everything ungraded (the same work without a huge IN list).
        ids = sorted(report.problem_ids) if len(report.problem_ids) <= 1000 else None
        graded = 0
        if report.problem_ids:
            to_grade = max(1, ungraded_solutions_count(problem_ids=ids))

            def solutions_graded(n: int) -> None:
                nonlocal graded
                graded += n
                progress(units + units * min(graded, to_grade) // to_grade, 2 * units)

            grading = answers_grade(problem_ids=ids, progress=solutions_graded)
            result["grading"] = grading.summary()
            graded = grading.solutions_graded
        result["graded"] = graded
        progress(2 * units, 2 * units)
    return result
