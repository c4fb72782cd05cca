"""PRM800K label records: each line parsed, checked and reduced to what the writers store."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labeling.answers import answer_extract
from labeling.models import FinishReason, TaskKind, text_sha256
from labeling.prm800k import chosen_trajectory, label_steps_check
from labeling.services.jsonl import LineInvalid, req_str, str_list, type_name

_MAX_TOTAL_TIME_MS = 2**31 - 1  # PositiveIntegerField's range on every backend

# json.dumps's output without its reference-cycle check (parsed JSON has no cycles): PRM800K
# label steps are re-encoded once per record, the importer's largest cost after parsing.
json_encode = json.JSONEncoder(check_circular=False).encode

_FINISH_REASONS = frozenset(FinishReason.values)  # .values builds a new list on each call
_QUESTION_NULLABLE_STRINGS = ("ground_truth_answer", "ground_truth_solution")


@dataclass(frozen=True)
class Prm800kRow:
    labeler: uuid.UUID
    created_at: datetime
    generation: int | None
    is_quality_control: bool
    is_screening: bool
    question: dict[str, Any]
    problem_hash: str
    steps: list[str]  # the candidate solution
    answer: str
    text_hash: str
    label_steps: list[Any]
    ratings: list[int | None]
    finish_reason: str
    total_time_ms: int
    label_keys: list[str]
    # JSON of steps, label_steps and ratings, encoded while parsing: on the read-ahead thread,
    # while the writer waits on PostgreSQL, rather than on the writer's critical path.
    encoded: tuple[str, str, str]

    @property
    def kind(self) -> str:
        if self.is_screening:
            return TaskKind.SCREENING
        if self.is_quality_control:
            return TaskKind.QUALITY_CONTROL
        return TaskKind.NORMAL

    @property
    def queued_score(self) -> float | None:
        return self.question.get("pre_generated_verifier_score")


def _req_bool(record: dict[str, Any], key: str) -> bool:
    value = record.get(key)
    if not isinstance(value, bool):
        raise LineInvalid(key, f"must be true or false, got {type_name(value)}")
    return value


def _parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise LineInvalid("timestamp", f"must be an ISO-8601 string, got {type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise LineInvalid("timestamp", f"{value!r} is not an ISO-8601 datetime") from None
    # PRM800K's timestamps are naive UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_question(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LineInvalid("question", f"must be an object, got {type_name(value)}")
    req_str(value, "problem", prefix="question.", nonempty=True)
    if "ground_truth_answer" not in value:
        raise LineInvalid("question.ground_truth_answer", "is required (a string or null)")
    # The release's initial-screening records have null ground truths (answer and solution).
    for key in _QUESTION_NULLABLE_STRINGS:
        if value.get(key) is not None and not isinstance(value[key], str):
            raise LineInvalid(
                f"question.{key}", f"must be a string or null, got {type_name(value[key])}"
            )
    answer = value.get("pre_generated_answer")
    if "pre_generated_answer" in value and not isinstance(answer, str):
        raise LineInvalid(
            "question.pre_generated_answer", f"must be a string, got {type_name(answer)}"
        )
    if "pre_generated_steps" in value:
        str_list(value["pre_generated_steps"], "question.pre_generated_steps")
    score = value.get("pre_generated_verifier_score")
    if score is not None and (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or not 0.0 <= score <= 1.0
    ):
        raise LineInvalid(
            "question.pre_generated_verifier_score", f"must be in [0, 1], got {score!r}"
        )
    return value


def prm800k_parse(record: dict[str, Any]) -> Prm800kRow:
    labeler_text = req_str(record, "labeler", nonempty=True)
    try:
        labeler = uuid.UUID(labeler_text)
    except ValueError:
        raise LineInvalid("labeler", f"{labeler_text!r} is not a UUID") from None
    created_at = _parse_timestamp(record.get("timestamp"))
    generation = record.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
        raise LineInvalid("generation", f"must be an integer or null, got {type_name(generation)}")
    is_qc = _req_bool(record, "is_quality_control_question")
    is_screening = _req_bool(record, "is_initial_screening_question")
    question = _parse_question(record.get("question"))
    label = record.get("label")
    if not isinstance(label, dict):
        raise LineInvalid("label", f"must be an object, got {type_name(label)}")
    label_steps = label_steps_check(label.get("steps"))
    total_time = label.get("total_time")
    if (
        isinstance(total_time, bool)
        or not isinstance(total_time, int)
        or not 0 <= total_time <= _MAX_TOTAL_TIME_MS
    ):
        raise LineInvalid(
            "label.total_time", f"must be a non-negative integer (ms), got {total_time!r}"
        )
    finish_reason = label.get("finish_reason")
    if finish_reason not in _FINISH_REASONS:
        raise LineInvalid(
            "label.finish_reason",
            f"must be one of {', '.join(FinishReason.values)}, got {finish_reason!r}",
        )

    pre_generated = question.get("pre_generated_steps")
    trajectory = chosen_trajectory(label_steps, own_steps=pre_generated)
    ratings: list[int | None] = [step.rating for step in trajectory]
    ratings += [None] * (len(label_steps) - len(ratings))
    if pre_generated is not None:
        steps = list(pre_generated)
        answer = question.get("pre_generated_answer") or answer_extract(steps)
    else:
        steps = [step.text for step in trajectory]
        answer = answer_extract(steps)
    return Prm800kRow(
        labeler=labeler,
        created_at=created_at,
        generation=generation,
        is_quality_control=is_qc,
        is_screening=is_screening,
        question=question,
        problem_hash=text_sha256(question["problem"]),
        steps=steps,
        answer=answer,
        text_hash=text_sha256("\n".join(steps)),
        label_steps=label_steps,
        ratings=ratings,
        finish_reason=finish_reason,
        total_time_ms=total_time,
        label_keys=list(label),
        encoded=(json_encode(steps), json_encode(label_steps), json_encode(ratings)),
    )


def record_extras(row: Prm800kRow, *, overrides: dict[str, Any]) -> dict[str, Any]:
    """``Label.record_extras``: what the record holds beyond the stored rows, so the export
    can write it back unchanged (``overrides``: the question values the rows do not give)."""
    return {
        "question_keys": list(row.question),
        "question_overrides": overrides,
        "is_quality_control_question": row.is_quality_control,
        "is_initial_screening_question": row.is_screening,
        "generation": row.generation,
        "label_keys": row.label_keys,
    }
