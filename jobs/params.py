"""Typed job parameters, checked when a job is created.

Each job kind declares its parameters as a frozen dataclass deriving from ``JobParams``, whose
fields carry their bounds (``bounded``); ``jobs.registry`` names that class per kind. Every
front door — an admin form, a management command, an API — calls ``job_params_clean`` (through
``job_create``), so a bad value gets the same answer everywhere: ``JobParamsInvalid``, with one
message per field. The worker reads the stored parameters back with ``JobParams.parse``, so a
row that predates a bound fails with the same message instead of running.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Self

from django.utils.module_loading import import_string

from jobs.registry import JOB_TASKS

# Every integer parameter fits a 32-bit column unless it says otherwise: a larger one could
# only overflow a query later.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"0", "false", "off", "no"})


class JobParamsInvalid(Exception):
    """Some parameters are invalid; ``errors`` maps each field to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


def bounded(
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
    max_length: int | None = None,
    check: Callable[[Any], None] | None = None,
    strip: bool = True,
) -> Any:
    """A parameter field with its bounds; ``check`` raises ValueError(message) on a bad value.
    ``strip=False`` keeps a form's text as typed (a prompt whose trailing newline matters)."""
    metadata = {
        "low": low,
        "high": high,
        "choices": choices,
        "max_length": max_length,
        "check": check,
        "strip": strip,
    }
    return dataclasses.field(default=default, metadata=metadata)


class JobParams:
    """Base of the per-kind parameter dataclasses (which must be ``@dataclass(frozen=True)``)."""

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None, *, text: bool = False) -> Self:
        """An instance from ``data``, or ``JobParamsInvalid`` naming every bad field.

        ``text=True`` reads a form: values may be strings ("3", "on"), a blank one counts as
        absent, and inputs that are not parameters (the CSRF token, say) are ignored. Without
        it, ``data`` is JSON-like (a command's options, an API body, a stored row) and a key
        that is not a parameter is an error.
        """
        return cls(**_clean(cls, data or {}, text=text))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclasses.dataclass(frozen=True)
class NoParams(JobParams):
    """A kind that takes no parameters (its version is the job's own field)."""


def job_params_class(kind: str) -> type[JobParams]:
    task = JOB_TASKS.get(kind)
    if task is None or not task.params:
        return NoParams
    found = import_string(task.params)
    assert issubclass(found, JobParams), task.params
    return typing.cast(type[JobParams], found)


def job_params_bounds(kind: str) -> dict[str, dict[str, float]]:
    """Each numeric parameter's ``{"low", "high"}`` for a job of ``kind``: the bounds its
    parse enforces, for a form's ``min``/``max`` (an integer's default range included)."""
    cls = job_params_class(kind)
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    bounds: dict[str, dict[str, float]] = {}
    for spec in dataclasses.fields(cls):
        kind_of, _ = _unwrap(hints[spec.name])
        if kind_of not in (int, float):
            continue
        low, high = spec.metadata.get("low"), spec.metadata.get("high")
        if kind_of is int:
            low = INT_MIN if low is None else low
            high = INT_MAX if high is None else high
        bounds[spec.name] = {k: v for k, v in (("low", low), ("high", high)) if v is not None}
    return bounds


def job_params_errors_text(errors: Mapping[str, str]) -> str:
    """``JobParamsInvalid.errors`` as words for a page: "per problem must be at most 1000, got
    5000; epochs must …" (a field's name with spaces, then its message)."""
    return "; ".join(f"{name.replace('_', ' ')} {message}" for name, message in errors.items())


def job_params_clean(
    kind: str, data: Mapping[str, Any] | None, *, text: bool = False
) -> dict[str, Any]:
    """The parameters a caller gave for a job of ``kind``, checked and typed (the defaults of
    those it left out apply when the job runs); ``JobParamsInvalid`` on any bad field."""
    cls = job_params_class(kind)
    values = _clean(cls, data or {}, text=text)
    cls(**values)  # every required field is there
    return values


def _clean(cls: type[JobParams], data: Mapping[str, Any], *, text: bool) -> dict[str, Any]:
    fields: dict[str, dataclasses.Field[Any]] = (
        {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    )
    hints = typing.get_type_hints(cls)
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    if not text:
        for key in data:
            if key not in fields:
                errors[str(key)] = "is not a parameter of this kind of job"
    for name, spec in fields.items():
        given = name in data and not (text and data[name] in ("", None))
        if not given:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                errors[name] = "is required"
            continue
        try:
            values[name] = _value(data[name], hints[name], spec.metadata, text=text)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise JobParamsInvalid(errors)
    return values


def _value(raw: Any, hint: Any, meta: Mapping[str, Any], *, text: bool) -> Any:
    kind, optional = _unwrap(hint)
    if raw is None:
        if optional:
            return None
        raise ValueError("must not be empty")
    if kind is bool:
        value: Any = _bool(raw, text=text)
    elif kind is int:
        value = _int(raw, text=text)
        _in_range(value, meta, INT_MIN, INT_MAX)
    elif kind is float:
        value = _float(raw, text=text)
        _in_range(value, meta, None, None)
    elif kind is str:
        if not isinstance(raw, str):
            raise ValueError(f"must be text, got {_shown(raw)}")
        value = raw.strip() if text and meta.get("strip", True) else raw
        if "\x00" in value:  # PostgreSQL cannot store it in the row's JSON
            raise ValueError("must not contain the NUL character")
        if meta.get("max_length") is not None and len(value) > meta["max_length"]:
            raise ValueError(f"must be at most {meta['max_length']} characters")
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"must be one of {', '.join(meta['choices'])}, got {_shown(value)}")
    else:  # pragma: no cover - a programming error in a parameter class
        raise TypeError(f"unsupported parameter type {hint!r}")
    if meta.get("check") is not None:
        meta["check"](value)
    return value


def _unwrap(hint: Any) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        assert len(args) == 1, hint
        return args[0], True
    return hint, False


def _bool(raw: Any, *, text: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if text and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError(f"must be true or false, got {_shown(raw)}")


def _int(raw: Any, *, text: bool) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if text and isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    raise ValueError(f"must be a whole number, got {_shown(raw)}")


def _float(raw: Any, *, text: bool) -> float:
    value: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif text and isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise ValueError(f"must be a number, got {_shown(raw)}")
    return value


def _in_range(value: float, meta: Mapping[str, Any], low: float | None, high: float | None) -> None:
    low = meta["low"] if meta.get("low") is not None else low
    high = meta["high"] if meta.get("high") is not None else high
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        if low is not None:
            raise ValueError(f"must be at least {low}, got {value}")
        raise ValueError(f"must be at most {high}, got {value}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
