"""Reads shared by the selector admin pages."""

from __future__ import annotations

from typing import Any


def _get(metrics: dict[str, Any] | None, *path: str) -> Any:
    value: Any = metrics or {}
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _last(metrics: dict[str, Any] | None, series: str) -> Any:
    values = _get(metrics, "best_of_n", series)
    return values[-1] if values else None


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


METRIC_ROWS: list[tuple[str, Any]] = [
    ("Step AUROC (negative vs not)", lambda m: _get(m, "step", "auroc")),
    ("Step AUPRC", lambda m: _get(m, "step", "auprc")),
    ("Held-out steps", lambda m: _get(m, "step", "n_steps")),
    ("… of which negative", lambda m: _get(m, "step", "n_negative")),
    ("First-error accuracy (erroneous)", lambda m: _get(m, "first_error", "acc_erroneous")),
    ("First-error accuracy (correct)", lambda m: _get(m, "first_error", "acc_correct")),
    ("First-error F1", lambda m: _get(m, "first_error", "f1")),
    ("Best-of-N problems", lambda m: _get(m, "best_of_n_problems")),
    ("Largest N", lambda m: _last(m, "n")),
    ("Best-of-N: selector", lambda m: _last(m, "selector")),
    ("Best-of-N: majority vote", lambda m: _last(m, "majority")),
    ("Best-of-N: random pick", lambda m: _last(m, "random")),
]


def metrics_table(
    *, metrics: dict[str, Any] | None, other: dict[str, Any] | None = None
) -> list[tuple[str, str, str]]:
    """(metric, this version, the other version) rows, formatted for a template."""
    if not metrics:
        return []
    return [
        (label, _fmt(get(metrics)), _fmt(get(other)) if other else "—")
        for label, get in METRIC_ROWS
    ]
