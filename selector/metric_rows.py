"""The one definition of the evaluation rows shown by the selector admin, the
``evaluate_selector`` command and the staff dashboard, read from what ``selector_evaluate``
writes (nested keys: ``step.auroc``, ``first_error.f1``, ``best_of_n.selector@4``).

A row's key is also the key of its paired-bootstrap interval in
``metrics["comparison"]["intervals"]``, so a value and its interval cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def metric_value(metrics: Any, key: str) -> Any:
    """The value at a dotted ``key``; ``series@N`` reads the entry for N of a best-of-N curve."""
    value: Any = metrics if isinstance(metrics, dict) else {}
    *path, last = key.split(".")
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if not isinstance(value, dict):
        return None
    if "@" in last:
        series, _, n = last.partition("@")
        ns, values = value.get("n") or [], value.get(series) or []
        return values[ns.index(int(n))] if int(n) in ns and len(values) == len(ns) else None
    return value.get(last)


@dataclass(frozen=True)
class MetricRow:
    key: str
    label: str
    # True: a version-quality number where higher is better (gets an interval and a verdict);
    # None: a count or a baseline that does not depend on the version.
    higher_is_better: bool | None = True

    def value(self, metrics: Any) -> Any:
        return metric_value(metrics, self.key)


# The headline rows: the dashboard's columns, the rows whose intervals decide the warning.
HEADLINE_ROWS: tuple[MetricRow, ...] = (
    MetricRow("step.auroc", "Step AUROC (negative vs not)"),
    MetricRow("step.auprc", "Step AUPRC"),
    MetricRow("first_error.acc_erroneous", "First-error accuracy (erroneous)"),
    MetricRow("first_error.acc_correct", "First-error accuracy (correct)"),
    MetricRow("first_error.f1", "First-error F1"),
)
# F1 at the version's own threshold (chosen on held-in validation data when it was trained).
THRESHOLD_ROWS: tuple[MetricRow, ...] = (
    MetricRow("first_error_tuned.f1", "First-error F1 at the held-in threshold"),
    MetricRow(
        "first_error_tuned.threshold", "… that threshold (chosen on held-in validation)", None
    ),
)
COUNT_ROWS: tuple[MetricRow, ...] = (
    MetricRow("eval_set.id", "Evaluation set", None),
    MetricRow("held_out.labels", "Evaluation labels", None),
    MetricRow("step.n_steps", "Evaluation steps", None),
    MetricRow("step.n_negative", "… of which negative", None),
    MetricRow("best_of_n_problems", "Best-of-N problems", None),
    # Past the model's window: left out of the numbers above, never imputed (decision 0005).
    MetricRow("unscored.rated_steps", "Rated steps past the window (left out)", None),
    MetricRow("unscored.undecided_first_errors", "First-error calls past the window", None),
)


def best_of_n_rows(metrics: Any) -> list[MetricRow]:
    """One row per N of the curve, with the number of problems that reach that N."""
    curve = metric_value(metrics, "best_of_n") if isinstance(metrics, dict) else None
    if not isinstance(curve, dict):
        return []
    rows: list[MetricRow] = []
    for n, problems in zip(curve.get("n") or [], curve.get("problems") or [], strict=False):
        rows.append(MetricRow(f"best_of_n.selector@{n}", f"Best-of-{n}: selector ({problems} pr.)"))
        rows.append(MetricRow(f"best_of_n.majority@{n}", f"Best-of-{n}: majority vote", None))
    return rows


def metric_rows(metrics: Any) -> list[MetricRow]:
    """Every row for one evaluation: headline, the best-of-N curve, then the counts."""
    return [*HEADLINE_ROWS, *THRESHOLD_ROWS, *best_of_n_rows(metrics), *COUNT_ROWS]


def interval(metrics: Any, key: str) -> dict[str, Any] | None:
    found = metric_value(metrics, "comparison.intervals")
    if not isinstance(found, dict):
        return None
    value = found.get(key)
    return value if isinstance(value, dict) else None


# An interval this close to zero at both ends shows as [+0.000, +0.000]: the two versions
# agree on every resample, which is "no difference", not "unclear".
NO_DIFFERENCE = 0.0005
VERDICTS = ("better", "worse", "no difference", "unclear")


def verdict(span: dict[str, Any] | None) -> str:
    """ "better" / "worse" when the 95% interval excludes zero, "no difference" when it is
    zero at both ends (to the shown precision), else "unclear"."""
    if not span or span.get("low") is None or span.get("high") is None:
        return "unclear"
    if abs(span["low"]) < NO_DIFFERENCE and abs(span["high"]) < NO_DIFFERENCE:
        return "no difference"
    if span["low"] > 0:
        return "better"
    if span["high"] < 0:
        return "worse"
    return "unclear"


def comparison_warning(metrics: Any) -> str | None:
    """Why promoting this version may be a mistake, or None when it is clearly better: at
    least one headline metric's interval is above zero and none is below."""
    if not isinstance(metrics, dict) or not metrics:
        return None
    against = metric_value(metrics, "comparison.against")
    if against is None:
        return None
    verdicts = {row.label: verdict(interval(metrics, row.key)) for row in HEADLINE_ROWS}
    worse = [label for label, v in verdicts.items() if v == "worse"]
    if worse:
        return f"Worse than {against} (95% interval below zero): {', '.join(worse)}."
    if "better" not in verdicts.values():
        return f"Not clearly better than {against}: every 95% interval includes zero."
    return None
