"""Standard step-labeled benchmarks (ProcessBench, PRM800K records): read, score, F1.

The whole file is read and checked before anything is scored or written, so bad input
fails with every ``FILE:LINE: field: problem`` at once and leaves no partial predictions.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from jobs.models import Job, JobKind
from selector.models import SelectorVersion
from selector.services.common import Progress, SelectorError, job_cancel_check, progress_for
from selector.services.jobs import job_start
from selector.services.versions import scorer_load, version_require_ready

MAX_REPORTED_ERRORS = 20


class BenchmarkError(SelectorError):
    """The benchmark file is malformed; the message lists FILE:LINE: field errors."""


@dataclass
class BenchmarkItem:
    id: str
    problem: str
    steps: list[str]
    label: int  # index of the first wrong step, -1 when every step is right


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")


def _str(record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise _Bad(field, "must be a non-empty string")
    return value


def _processbench_item(record: dict[str, Any]) -> BenchmarkItem:
    raw_id = record.get("id")
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool) or raw_id == "":
        raise _Bad("id", "must be a non-empty string or an integer")
    steps = record.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise _Bad("steps", "must be a non-empty list of strings")
    label = record.get("label")
    if not isinstance(label, int) or isinstance(label, bool) or not -1 <= label < len(steps):
        raise _Bad("label", f"must be -1 or a step index 0..{len(steps) - 1}, got {label!r}")
    correct = record.get("final_answer_correct")
    if correct is not None and not isinstance(correct, bool):
        raise _Bad("final_answer_correct", f"must be true or false, got {correct!r}")
    return BenchmarkItem(id=str(raw_id), problem=_str(record, "problem"), steps=steps, label=label)


def _prm800k_item(record: dict[str, Any], line: int) -> BenchmarkItem | None:
    """A PRM800K label record as a benchmark item, read by the one PRM800K reader
    (``labeling.prm800k``), or None when it has no first-error answer (gave up or finished
    without an error found, bad problem).

    The item is the chosen trajectory, as the labeler went on (phase 2: the pre-generated
    solution, scored whole; phase 1: the chosen completions and the labeler's own steps), and
    its first error the trajectory's first -1. A phase-1 trajectory that stops at a step whose
    completions were all rated down ends there with the first of them, the error found."""
    from labeling.prm800k import chosen_trajectory, label_steps_check, rated_branches
    from labeling.services.jsonl import LineInvalid

    question = record.get("question")
    label = record.get("label")
    if not isinstance(question, dict):
        raise _Bad("question", "must be an object")
    if not isinstance(label, dict):
        raise _Bad("label", "must be an object")
    problem = question.get("problem")
    if not isinstance(problem, str) or not problem.strip():
        raise _Bad("question.problem", "must be a non-empty string")
    own = question.get("pre_generated_steps")
    if own is not None and (not isinstance(own, list) or not all(isinstance(s, str) for s in own)):
        raise _Bad("question.pre_generated_steps", "must be a list of strings")
    try:
        steps = label_steps_check(label.get("steps"))
    except LineInvalid as exc:
        raise _Bad(exc.field, exc.message) from None
    finish = label.get("finish_reason")
    if finish == "bad_problem":
        return None
    trajectory = chosen_trajectory(steps, own_steps=own)
    texts = [s.text for s in trajectory]
    first_error = next((i for i, s in enumerate(trajectory) if s.rating == -1), None)
    if first_error is None and finish == "found_error" and not own:
        stopped = len(trajectory)
        found = next(
            (b for b in rated_branches(steps, trajectory=trajectory)
             if b.step == stopped and b.rating == -1),
            None,
        )  # fmt: skip
        if found is not None:
            texts, first_error = [*texts, found.text], stopped
    if first_error is None and finish != "solution":
        return None  # gave up: no first-error answer
    if own and texts == own[: len(texts)]:
        texts = list(own)  # the whole solution, as a selector scores it
    if not texts:
        return None
    return BenchmarkItem(
        id=str(record.get("id") or f"line-{line}"),
        problem=problem,
        steps=texts,
        label=-1 if first_error is None else first_error,
    )


def benchmark_read(*, path: Path) -> tuple[list[BenchmarkItem], dict[str, Any]]:
    """(items, {"format", "skipped"}) from a ProcessBench or PRM800K JSONL file; every
    problem in the file raises one ``BenchmarkError`` naming FILE:LINE: field."""
    from labeling.services.jsonl import LineError, jsonl_records

    items: list[BenchmarkItem] = []
    errors: list[str] = []
    formats: set[str] = set()
    skipped = 0
    seen: dict[str, int] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BenchmarkError(f"{path}: cannot read: {exc.strerror}") from exc
    with handle:
        # The labeling importers' line reader: bytes that are not UTF-8 (named by offset),
        # JSON nested too deeply, a NUL character: each a line error, never a crash.
        for line_no, record in jsonl_records(handle):
            try:
                if isinstance(record, LineError):
                    raise _Bad("json", record.message)
                is_prm800k = isinstance(record.get("question"), dict)
                formats.add("prm800k" if is_prm800k else "processbench")
                item = _prm800k_item(record, line_no) if is_prm800k else _processbench_item(record)
                if item is None:
                    skipped += 1
                    continue
                if item.id in seen:
                    raise _Bad("id", f"{item.id!r} repeats line {seen[item.id]}")
                seen[item.id] = line_no
                items.append(item)
            except _Bad as exc:
                errors.append(f"{path}:{line_no}: {exc}")
                if len(errors) >= MAX_REPORTED_ERRORS:
                    errors.append(f"{path}: stopped after {MAX_REPORTED_ERRORS} errors")
                    break
    if len(formats) > 1:
        errors.append(f"{path}: mixes ProcessBench and PRM800K records")
    if not errors and not items:
        errors.append(f"{path}: no items to evaluate")
    if errors:
        raise BenchmarkError("\n".join(errors))
    return items, {"format": formats.pop(), "skipped": skipped}


def _predictions_write(path: Path, rows: list[dict[str, Any]]) -> None:
    """Written beside the target and renamed into place: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def benchmark_evaluate(
    *,
    version: SelectorVersion,
    path: Path,
    threshold: float = 0.5,
    predictions: Path | None = None,
    job: Job | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """ProcessBench F1 of ``version`` on a benchmark file (ProcessBench's metric: the first
    step scoring below ``threshold`` is the predicted first error). ``predictions`` gets one
    JSON line per item: ``{"id", "first_error", "step_scores"}``. A solution longer than the
    scorer's window has its cut steps unscored (``truncated`` counts such items); an item whose
    call would need an unscored step (a correct one, or an error past the cut) is left out of
    F1 with ``first_error`` null, counted in ``undecided`` (decision 0005's one rule)."""
    from selector.ml.metrics import first_error_decided, processbench_f1

    version_require_ready(version)
    if not 0.0 <= threshold <= 1.0:
        raise SelectorError(f"threshold must be within 0..1, got {threshold!r}")
    items, info = benchmark_read(path=path)
    report = progress_for(job, progress)
    job_cancel_check(job)
    scorer = scorer_load(version)
    results = scorer.score([(item.problem, item.steps) for item in items], progress=report)
    scores = [[float(s) for s in r.step_scores] for r in results]
    decided = [
        first_error_decided(
            n_scored=len(s),
            n_steps=len(item.steps),
            first_error=None if item.label < 0 else item.label,
        )
        for item, s in zip(items, scores, strict=True)
    ]
    called, metrics = processbench_f1(
        [s for s, ok in zip(scores, decided, strict=True) if ok],
        [item.label for item, ok in zip(items, decided, strict=True) if ok],
        threshold=threshold,
    )
    # F1 also at the version's own threshold (chosen on held-in validation data when trained).
    from selector.services.evaluation import version_threshold

    tuned_threshold = version_threshold(version)
    _, tuned = processbench_f1(
        [s for s, ok in zip(scores, decided, strict=True) if ok],
        [item.label for item, ok in zip(items, decided, strict=True) if ok],
        threshold=tuned_threshold,
    )
    calls = iter(called)
    predicted = [next(calls) if ok else None for ok in decided]
    if predictions is not None:
        _predictions_write(
            predictions,
            [
                {"id": item.id, "first_error": first, "step_scores": s}
                for item, first, s in zip(items, predicted, scores, strict=True)
            ],
        )
    return {
        "benchmark": name or path.name,
        "format": info["format"],
        "version": version.name,
        "version_id": version.pk,
        **metrics,
        "f1_tuned": tuned["f1"],
        "threshold_tuned": tuned_threshold,
        "items": len(items),
        "skipped": info["skipped"],
        "truncated": sum(1 for r in results if r.truncated_steps),
        "undecided": decided.count(False),
    }


def benchmark_upload(
    *,
    version: SelectorVersion,
    spooled: Path,
    filename: str,
    threshold: float = 0.5,
    user: Any = None,
) -> Job:
    """Start a benchmark Job on a file the request spooled to disk (under IMPORT_UPLOAD_DIR,
    by ``labeling.api.uploads``). The file is not read here: the job checks it, and a bad one
    fails the job with every FILE:LINE error, naming the file as the sender did. It is kept
    (renamed beside the spool) only when the job is created; otherwise the caller discards it.
    """
    version_require_ready(version)
    if not 0.0 <= threshold <= 1.0:
        raise SelectorError(f"threshold must be within 0..1, got {threshold!r}")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).name)[:80] or "benchmark.jsonl"
    kept = Path(settings.IMPORT_UPLOAD_DIR) / f"benchmark-{uuid.uuid4().hex}-{safe}"
    with transaction.atomic():
        job = job_start(
            kind=JobKind.BENCHMARK,
            params={"path": str(kept), "name": safe, "threshold": threshold},
            user=user,
            version=version,
        )
        # After the row (a refused job keeps no file), before the commit sends the task.
        os.replace(spooled, kept)
    return job


def benchmark_uploaded(path: Path) -> bool:
    """Whether ``path`` is a file an upload kept (under IMPORT_UPLOAD_DIR), which the job
    owns and removes; a path given to the command is the user's, never removed."""
    return path.resolve().is_relative_to(Path(settings.IMPORT_UPLOAD_DIR).resolve())


def benchmark_job_evaluate(
    *, job: Job, path: Path, threshold: float, name: str | None, progress: Progress | None
) -> dict[str, Any]:
    """A benchmark job's work: evaluate, naming an uploaded file as its sender did in every
    error; the upload is removed once it is done with (scored, or refused as bad input)."""
    assert job.version is not None
    uploaded = benchmark_uploaded(path)
    try:
        result = benchmark_evaluate(
            version=job.version,
            path=path,
            threshold=threshold,
            name=name,
            job=job,
            progress=progress,
        )
    except BenchmarkError as exc:
        if not uploaded:
            raise
        path.unlink(missing_ok=True)  # the same bytes would fail the same way
        raise BenchmarkError(str(exc).replace(str(path), name or path.name)) from None
    if uploaded:
        path.unlink(missing_ok=True)
    return result


def benchmark_abandoned(*, job: Job) -> None:
    """The jobs registry's hook for a benchmark job finished without its worker (cancelled,
    marked failed, lost): the file it uploaded goes with it."""
    raw = (job.params or {}).get("path")
    if isinstance(raw, str) and raw and benchmark_uploaded(Path(raw)):
        Path(raw).unlink(missing_ok=True)
