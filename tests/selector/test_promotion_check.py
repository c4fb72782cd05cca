"""promotion_check: the one verdict admin, API and CLI ask before promoting."""

from typing import Any

import pytest

from selector import metric_rows
from selector.models import SelectorVersion, VersionStatus
from selector.services.promotion import promotion_check

pytestmark = pytest.mark.django_db


def version(name: str, *, active: bool = False, metrics: Any = None) -> SelectorVersion:
    return SelectorVersion.objects.create(
        name=name, base_model="-", status=VersionStatus.READY, is_active=active,
        metrics=metrics or {},
    )  # fmt: skip


def compared(spans: dict[str, tuple[float, float, float]]) -> dict[str, Any]:
    return {
        "step": {"auroc": 0.7},
        "compared_with": {"version": "active", "step": {"auroc": 0.7}},
        "eval_set": {"id": 4},
        "held_out": {"labels": 30},
        "comparison": {
            "against": "active",
            "intervals": {
                key: {"diff": d, "low": lo, "high": hi} for key, (d, lo, hi) in spans.items()
            },
        },
    }


@pytest.mark.parametrize(
    ("spans", "verdict"),
    [
        ({"step.auroc": (0.1, 0.02, 0.2)}, "better"),
        ({"step.auroc": (0.1, 0.02, 0.2), "first_error.f1": (-0.1, -0.2, -0.01)}, "worse"),
        ({"step.auroc": (0.01, -0.05, 0.07)}, "unclear"),
        ({"step.auroc": (0.0, 0.0, 0.0), "first_error.f1": (0.0, -0.0001, 0.0002)},
         "no difference"),
    ],
)  # fmt: skip
def test_verdicts(spans, verdict):
    version("active", active=True)
    check = promotion_check(version=version("challenger", metrics=compared(spans)))
    assert check.verdict == verdict
    assert check.needs_force is (verdict == "worse")
    assert (check.eval_set_id, check.eval_labels) == (4, 30)


def test_a_zero_width_interval_at_zero_is_no_difference_not_unclear():
    assert metric_rows.verdict({"diff": 0.0, "low": 0.0, "high": 0.0}) == "no difference"
    assert metric_rows.verdict({"diff": 0.0, "low": -0.0004, "high": 0.0003}) == "no difference"
    assert metric_rows.verdict({"diff": 0.0, "low": -0.01, "high": 0.01}) == "unclear"


def test_never_compared_or_first_version_is_not_a_refusal():
    lone = version("lone")
    assert promotion_check(version=lone).verdict == "first"
    version("active", active=True)
    check = promotion_check(version=lone)
    assert check.verdict == "not compared" and not check.needs_force
    assert "evaluate it first" in check.message


def test_the_cli_refuses_a_worse_version_unless_forced():
    from django.core.management import CommandError, call_command

    from jobs.models import Job

    version("active", active=True)
    version("worse", metrics=compared({"step.auroc": (-0.2, -0.3, -0.1)}))
    with pytest.raises(CommandError, match=r"clearly worse than active.*--force"):
        call_command("promote_selector", "--selector", "worse", verbosity=0)
    assert not Job.objects.exists()
    call_command("promote_selector", "--selector", "worse", "--force", verbosity=0)
    assert Job.objects.get().version.name == "worse"
