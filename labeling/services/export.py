"""Export labels as PRM800K JSONL and as TRL stepwise-supervision JSONL, streamed.

Both exports read labels in keyset-paginated chunks of flat ``values_list`` rows (one query per
chunk, no N+1, no model instances) and yield text blocks, so memory stays flat however many
labels there are. The PRM800K writer never parses ``Label.steps``: it fetches the column as JSON
text and splices it into the line. PostgreSQL's ``jsonb`` text form orders object keys by length,
which for PRM800K's step objects happens to be PRM800K's own order, so the lines read the same.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import IO, Any, Literal

from django.db import connections
from django.db.models import Func, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from labeling.models import FinishReason, Label, TaskKind
from labeling.prm800k import HUMAN_STEP_RATING, ChosenStep, chosen_trajectory, rated_branches
from labeling.queries import labels_from_reliable_annotators
from labeling.read_ahead import read_ahead

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1000
ExportFormat = Literal["prm800k", "stepwise"]
Neutral = Literal["positive", "negative"]

# json.dumps for one str, without the encoder machinery around it (the C implementation).
_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


class ExportError(ValueError):
    """A label cannot be written in the requested format; the message names the label."""


@dataclass(frozen=True)
class ExportFilters:
    generation: int | None = None
    since: datetime | None = None
    include_qc: bool = False
    include_screening: bool = False

    def as_params(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "since": self.since.isoformat() if self.since else None,
            "include_qc": self.include_qc,
            "include_screening": self.include_screening,
        }


@dataclass(frozen=True)
class StepwiseOptions:
    """How the TRL stepwise export shapes its rows. The defaults are training hygiene: labels
    of annotators who failed screening or are paused left out, flagged steps no targets, one
    row per rated branch, a step the labeler wrote labeled true (``exclude_human_completions``
    ends a row before one and writes no row for a correction).

    ``as_params()`` is both a job's stored parameters and the keyword arguments of
    ``stepwise_chunks`` / ``stepwise_export``.
    """

    neutral: Neutral = "positive"
    trajectories_only: bool = False
    include_flagged: bool = False
    include_unreliable: bool = False
    exclude_human_completions: bool = False

    def __post_init__(self) -> None:
        if self.neutral not in ("positive", "negative"):
            raise ValueError(f"neutral: {self.neutral!r} is not one of positive, negative")

    def as_params(self) -> dict[str, Any]:
        return {
            "neutral": self.neutral,
            "trajectories_only": self.trajectories_only,
            "include_flagged": self.include_flagged,
            "include_unreliable": self.include_unreliable,
            "exclude_human_completions": self.exclude_human_completions,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> StepwiseOptions:
        # A job queued before an option existed has no key for it: the default applies.
        return cls(
            neutral=params.get("neutral", "positive"),
            trajectories_only=bool(params.get("trajectories_only")),
            include_flagged=bool(params.get("include_flagged")),
            include_unreliable=bool(params.get("include_unreliable")),
            exclude_human_completions=bool(params.get("exclude_human_completions")),
        )


def parse_since(value: str) -> datetime:
    """``YYYY-MM-DD`` or an ISO-8601 datetime; naive values are taken as UTC."""
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), time.min)
        except ValueError:
            raise ValueError(
                f"since: {value!r} is not a date (YYYY-MM-DD) or an ISO-8601 datetime"
            ) from None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    try:
        # The database compares in UTC: an offset that carries the value past year 9999 (or
        # before year 1) has no datetime there.
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"since: {value!r} is out of range once read as UTC") from None
    return parsed


def labels_for_export(
    *, filters: ExportFilters, labels: QuerySet[Label] | None = None
) -> QuerySet[Label]:
    """The labels an export with these filters covers (QC and screening only when asked)."""
    qs = Label.objects.all() if labels is None else labels
    if filters.generation is not None:
        qs = qs.filter(task__generation=filters.generation)
    if filters.since is not None:
        qs = qs.filter(created_at__gte=filters.since)
    # An imported record keeps its own flags in record_extras; honour them as well as the kind.
    if not filters.include_qc:
        qs = qs.exclude(task__kind=TaskKind.QUALITY_CONTROL).exclude(
            _flag_set("is_quality_control_question")
        )
    if not filters.include_screening:
        qs = qs.exclude(task__kind=TaskKind.SCREENING).exclude(
            _flag_set("is_initial_screening_question")
        )
    return qs


def _flag_set(key: str) -> Q:
    # has_key first: a bare JSON lookup on a missing key is SQL NULL, and NOT (NULL) would
    # silently drop the row from the export.
    return Q(**{"record_extras__has_key": key, f"record_extras__{key}": True})


def _keyset_chunks(
    labels: QuerySet[Label], fields: tuple[str, ...], chunk_size: int, **annotations: Any
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``labels`` in id order, ``chunk_size`` at a time; the first field must be id.

    Keyset pagination rather than a server-side cursor: no transaction held open for the whole
    export, and it works the same on SQLite and PostgreSQL (and behind a pooler).
    """
    base = labels.order_by().annotate(**annotations).order_by("id")
    last_id = 0
    while True:
        rows = list(base.filter(id__gt=last_id).values_list(*fields)[:chunk_size])
        if not rows:
            return
        yield rows
        last_id = rows[-1][0]
        if len(rows) < chunk_size:
            return


def _prefetched(chunks: Iterator[list[tuple[Any, ...]]]) -> Iterator[list[tuple[Any, ...]]]:
    """Fetch the next chunk on another thread (and connection) while this one formats.

    The database spends about as long producing a chunk as Python spends writing it, and the
    wait releases the GIL, so overlapping them nearly doubles throughput. Inside a transaction
    another connection could not see this one's uncommitted rows, so there it stays serial.
    """
    if connections["default"].in_atomic_block:
        return chunks
    # The fetching thread's own connections are closed as it ends; waited for to the end, so
    # no query of it outlives the export.
    return read_ahead(
        chunks, name="export-prefetch", on_thread_exit=connections.close_all, join_timeout=None
    )


class _NaiveUtcIsoformat(Func):
    """``created_at`` as PRM800K's timestamp text, formatted by the database.

    Parsing 100k datetimes into Python objects only to format them again costs about a tenth
    of the export's time.
    """

    output_field = TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
            **extra,
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores SQLite datetimes as UTC text, without the fraction when it is zero.
        return self.as_sql(
            compiler,
            connection,
            template="REPLACE(CASE WHEN LENGTH(%(expressions)s) = 19 "
            "THEN %(expressions)s || '.000000' ELSE %(expressions)s END, ' ', 'T')",
            **extra,
        )


_PRM_FIELDS = (
    "id",
    "labeler",
    "timestamp",
    "total_time_ms",
    "finish_reason",
    "extras_text",
    "steps_text",
    "task__generation",
    "task__kind",
    "task__queued_score",
    "solution_steps_text",
    "task__solution__answer",
    "task__solution__problem__problem",
    "task__solution__problem__solution",
    "task__solution__problem__answer",
)


def _json_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _encode_str(value)
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, int):
        return int.__repr__(value)
    return json.dumps(value, ensure_ascii=False)


def _prm800k_line(row: tuple[Any, ...]) -> str:
    (
        label_id,
        labeler,
        timestamp,
        total_time,
        finish_reason,
        extras,
        steps_text,
        generation,
        kind,
        queued_score,
        solution_steps_text,
        solution_answer,
        problem,
        reference_solution,
        answer,
    ) = row
    if extras is None:
        # A native Stepwise label: the full phase-2 shape, formatted in one go (the hot path).
        return (
            f'{{"labeler": "{labeler}", "timestamp": "{timestamp}", '
            f'"generation": {_json_scalar(generation)}, '
            f'"is_quality_control_question": '
            f"{'true' if kind == TaskKind.QUALITY_CONTROL else 'false'}, "
            f'"is_initial_screening_question": '
            f"{'true' if kind == TaskKind.SCREENING else 'false'}, "
            f'"question": {{"problem": {_encode_str(problem)}, '
            f'"ground_truth_solution": {_encode_str(reference_solution)}, '
            f'"ground_truth_answer": {_encode_str(answer)}, '
            f'"pre_generated_steps": {solution_steps_text}, '
            f'"pre_generated_answer": {_encode_str(solution_answer)}, '
            f'"pre_generated_verifier_score": {_json_scalar(queued_score)}}}, '
            f'"label": {{"steps": {steps_text}, "total_time": {total_time}, '
            f'"finish_reason": {_encode_str(finish_reason)}}}}}\n'
        )
    # An imported record: exactly the keys, flags and generation it came with.
    layout = _imported_layout(extras, kind, generation)
    question_parts = []
    for key, override in layout.question:
        if override is not None:
            encoded = override
        elif key == "problem":
            encoded = _encode_str(problem)
        elif key == "ground_truth_answer":
            encoded = _encode_str(answer)
        elif key == "ground_truth_solution":
            encoded = _encode_str(reference_solution)
        elif key == "pre_generated_steps":
            encoded = solution_steps_text
        elif key == "pre_generated_answer":
            encoded = _encode_str(solution_answer)
        elif key == "pre_generated_verifier_score":
            encoded = _json_scalar(queued_score)
        else:
            raise ExportError(f"label {label_id}: question key {key!r} has no stored value")
        question_parts.append(f"{_encode_str(key)}: {encoded}")
    label_values = {
        "steps": steps_text,
        "total_time": int.__repr__(total_time),
        "finish_reason": _encode_str(finish_reason),
    }
    label_parts = [f'"{k}": {label_values[k]}' for k in layout.label_keys]
    return (
        f'{{"labeler": "{labeler}", "timestamp": "{timestamp}", {layout.flags}'
        f'"question": {{{", ".join(question_parts)}}}, '
        f'"label": {{{", ".join(label_parts)}}}}}\n'
    )


@dataclass(frozen=True)
class _Layout:
    flags: str  # the generation and both flags, encoded, each followed by ", "
    question: tuple[tuple[str, str | None], ...]  # (key, encoded override or None)
    label_keys: tuple[str, ...]


_QUESTION_KEYS = (
    "problem",
    "ground_truth_solution",
    "ground_truth_answer",
    "pre_generated_steps",
    "pre_generated_answer",
    "pre_generated_verifier_score",
)
_LABEL_KEYS = ("steps", "total_time", "finish_reason")


@functools.lru_cache(maxsize=1024)  # bounded: overrides can hold long texts
def _imported_layout(extras_text: str, kind: str, task_generation: int | None) -> _Layout:
    """How an imported record is laid out, parsed once per distinct ``record_extras``.

    PRM800K's records share a handful of layouts (key lists, flags, generation), so caching
    by the column's text skips parsing it for nearly every row.
    """
    extras = json.loads(extras_text)
    overrides = extras.get("question_overrides") or {}
    qc = bool(extras.get("is_quality_control_question", kind == TaskKind.QUALITY_CONTROL))
    screening = bool(extras.get("is_initial_screening_question", kind == TaskKind.SCREENING))
    generation = extras.get("generation", task_generation)
    return _Layout(
        flags=(
            f'"generation": {_json_scalar(generation)}, '
            f'"is_quality_control_question": {"true" if qc else "false"}, '
            f'"is_initial_screening_question": {"true" if screening else "false"}, '
        ),
        question=tuple(
            (key, json.dumps(overrides[key], ensure_ascii=False) if key in overrides else None)
            for key in extras.get("question_keys") or _QUESTION_KEYS
        ),
        # Keys the label object cannot have had (we store only these three) are not written.
        label_keys=tuple(k for k in extras.get("label_keys") or _LABEL_KEYS if k in _LABEL_KEYS),
    )


def prm800k_chunks(
    *, labels: QuerySet[Label], chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Generator[tuple[str, int, int]]:
    """PRM800K JSONL for ``labels`` in id order, as (block of lines, lines, labels read)."""
    chunks = _keyset_chunks(
        labels,
        _PRM_FIELDS,
        chunk_size,
        timestamp=_NaiveUtcIsoformat("created_at"),
        extras_text=Cast("record_extras", TextField()),
        steps_text=Cast("steps", TextField()),
        solution_steps_text=Cast("task__solution__steps", TextField()),
    )
    for rows in _prefetched(chunks):
        yield "".join([_prm800k_line(row) for row in rows]), len(rows), len(rows)


_TRL_FIELDS = (
    "id",
    "steps",
    "finish_reason",
    "task__solution__problem__problem",
    "task__solution__steps",
)


def _trl_label(
    step: ChosenStep, neutral_ok: bool, include_flagged: bool, exclude_human: bool
) -> bool | None:
    """A trajectory step's TRL label; None where it can carry none (the row must end before):
    TRL needs a label on every step of a row. A step the labeler wrote reads as rated
    ``HUMAN_STEP_RATING`` (PRM800K's README: "their own +1 step"); a model step left unrated
    (a give-up's last step) has no label at all."""
    if (step.flagged and not include_flagged) or (step.source == "human" and exclude_human):
        return None
    if step.rating is None:
        return None
    return step.rating == 1 or (step.rating == 0 and neutral_ok)


def stepwise_rows(
    *,
    problem: str,
    steps: list[dict[str, Any]],
    own_steps: list[str] | None,
    neutral: Neutral = "positive",
    trajectories_only: bool = False,
    include_flagged: bool = False,
    exclude_human_completions: bool = False,
) -> Iterator[dict[str, Any]]:
    """TRL rows for one label: its chosen trajectory, then one row per rated branch.

    The trajectory row runs up to and including its first negative step (and ends before an
    unrated or, by default, a flagged step). A branch row is the trajectory's prefix before the
    branch's step, with the prefix's labels, then the branch's completion and its label;
    branches after a negative step, after an unlabeled prefix step or flagged are left out.
    A step the labeler wrote is labeled true: on the trajectory (phase 1) and as a branch of
    its own (the correction at phase 2's error step), unless ``exclude_human_completions``.
    """
    neutral_ok = neutral == "positive"
    trajectory = chosen_trajectory(steps, own_steps=own_steps, human_default=HUMAN_STEP_RATING)
    labels: list[bool | None] = [
        _trl_label(s, neutral_ok, include_flagged, exclude_human_completions) for s in trajectory
    ]
    row_texts: list[str] = []
    row_labels: list[bool] = []
    for step, label in zip(trajectory, labels, strict=True):
        if label is None:
            break
        row_texts.append(step.text)
        row_labels.append(label)
        if step.rating == -1:
            break
    if any(s.rating is not None for s in trajectory[: len(row_texts)]):
        yield {"prompt": problem, "completions": row_texts, "labels": row_labels}
    if trajectories_only:
        return
    for branch in rated_branches(steps, trajectory=trajectory, human_default=HUMAN_STEP_RATING):
        if branch.after_error or (branch.flagged and not include_flagged):
            continue
        if branch.source == "human" and exclude_human_completions:
            continue
        prefix_labels = labels[: branch.step]
        if None in prefix_labels:
            continue
        yield {
            "prompt": problem,
            "completions": [*branch.prefix, branch.text],
            "labels": [
                *prefix_labels,
                branch.rating == 1 or (branch.rating == 0 and neutral_ok),
            ],
        }


def stepwise_chunks(
    *,
    labels: QuerySet[Label],
    neutral: Neutral = "positive",
    trajectories_only: bool = False,
    include_flagged: bool = False,
    include_unreliable: bool = False,
    exclude_human_completions: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Generator[tuple[str, int, int]]:
    """TRL stepwise-supervision JSONL: ``{"prompt", "completions", "labels"}`` per rated
    branch of each label (see ``stepwise_rows``), or per label with ``trajectories_only``.

    Labels on broken problems carry no usable step signal and are left out, as are labels
    with no rated step. This is training data, so by default the labels of annotators who
    failed screening or are paused are left out too (``include_unreliable``), flagged
    steps are no targets (``include_flagged``), and a step the labeler wrote is labeled true
    (``exclude_human_completions``).
    """
    qs = labels.exclude(finish_reason=FinishReason.BAD_PROBLEM)
    if not include_unreliable:
        qs = labels_from_reliable_annotators(labels=qs)
    for rows in _prefetched(_keyset_chunks(qs, _TRL_FIELDS, chunk_size)):
        lines = []
        for _label_id, steps, _finish, problem, own_steps in rows:
            for record in stepwise_rows(
                problem=problem,
                steps=steps,
                own_steps=own_steps,
                neutral=neutral,
                trajectories_only=trajectories_only,
                include_flagged=include_flagged,
                exclude_human_completions=exclude_human_completions,
            ):
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        yield "".join(lines), len(lines), len(rows)


def _write(
    chunks: Iterator[tuple[str, int, int]],
    out: IO[bytes],
    on_progress: Callable[[int], None] | None,
) -> int:
    """Write blocks; ``on_progress`` gets the number of labels read so far."""
    written = read = 0
    for block, lines, rows in chunks:
        out.write(block.encode("utf-8"))
        written += lines
        read += rows
        if on_progress is not None:
            on_progress(read)
    return written


def prm800k_export(
    *,
    out: IO[bytes],
    filters: ExportFilters,
    labels: QuerySet[Label] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write PRM800K JSONL to a binary stream; returns the number of lines."""
    qs = labels_for_export(filters=filters, labels=labels)
    return _write(prm800k_chunks(labels=qs, chunk_size=chunk_size), out, on_progress)


def stepwise_export(
    *,
    out: IO[bytes],
    filters: ExportFilters,
    neutral: Neutral = "positive",
    trajectories_only: bool = False,
    include_flagged: bool = False,
    include_unreliable: bool = False,
    exclude_human_completions: bool = False,
    labels: QuerySet[Label] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write TRL stepwise-supervision JSONL to a binary stream; returns the number of lines."""
    qs = labels_for_export(filters=filters, labels=labels)
    chunks = stepwise_chunks(
        labels=qs,
        neutral=neutral,
        trajectories_only=trajectories_only,
        include_flagged=include_flagged,
        include_unreliable=include_unreliable,
        exclude_human_completions=exclude_human_completions,
        chunk_size=chunk_size,
    )
    return _write(chunks, out, on_progress)
