"""Starting the selector's background jobs: which kinds it runs, and their checks.

The generic life of a job (queue, heartbeat, reaper) is ``jobs.services``; what each kind runs
is ``selector.services.job_runs``; its parameters are ``selector.services.job_params``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from jobs.models import Job, JobKind
from jobs.params import JobParamsInvalid
from jobs.services import job_create
from selector.models import SelectorVersion
from selector.services.common import SelectorError
from selector.services.eval_set import eval_set_check_usable
from selector.services.promotion import PromotionCheck, promotion_check
from selector.services.queue_fill import FILL_RULES, fill_rule_unavailable
from selector.services.versions import selector_active, version_require_ready

SELECTOR_KINDS = {
    JobKind.TRAIN,
    JobKind.EVALUATE,
    JobKind.PROMOTE,
    JobKind.SCORE,
    JobKind.FILL,
    JobKind.BENCHMARK,
    JobKind.SIMULATE,
    JobKind.GENERATE,
    JobKind.IMPORT_PRM,
}
_NEEDS_VERSION = {JobKind.EVALUATE, JobKind.PROMOTE, JobKind.BENCHMARK}


def job_start(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    version: SelectorVersion | None = None,
    enqueue: bool = True,
) -> Job:
    """Record a selector Job and enqueue its Celery task once the row is committed.

    Raises ``SelectorError`` for a kind or version it cannot run, and
    ``jobs.params.JobParamsInvalid`` (naming each field) for bad ``params``.
    """
    if kind not in SELECTOR_KINDS:
        raise SelectorError(f"kind {kind!r}: not a background selector job")
    if kind in _NEEDS_VERSION and version is None:
        raise SelectorError(f"kind {kind!r}: needs a selector version")
    if version is not None and kind in _NEEDS_VERSION | {JobKind.SCORE}:
        version_require_ready(version)
    if kind == JobKind.EVALUATE:
        eval_set_check_usable()
    if kind == JobKind.FILL:
        _fill_rule_check(params or {}, version)
    return job_create(
        kind=kind,
        params=params,
        user=user,
        version_id=version.pk if version is not None else None,
        enqueue=enqueue,
    )


def _fill_rule_check(params: dict[str, Any], version: SelectorVersion | None) -> None:
    """Refuse, naming ``rule``, a fill whose rule the version it will use cannot fill by (the
    job would only fail on the worker). A rule that is not one is refused by the parameters'
    own check; no active version is the fill's own error."""
    rule = params.get("rule") or settings.SELECTOR_RULE
    version = version or selector_active()
    if not isinstance(rule, str) or rule not in FILL_RULES or version is None:
        return
    unavailable = fill_rule_unavailable(rule=rule, version=version)
    if unavailable:
        given = "" if params.get("rule") else " (SELECTOR_RULE)"
        raise JobParamsInvalid({"rule": f"{rule}{given} is unavailable: {unavailable}"})


class PromotionRefused(SelectorError):
    """The version's evaluation says it is worse than the active one; ``force`` overrides."""

    def __init__(self, check: PromotionCheck) -> None:
        super().__init__(check.message)
        self.check = check


def promotion_start(
    *,
    version: SelectorVersion,
    force: bool = False,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> Job:
    """Start promoting ``version`` (score the pool with it, then switch), unless it was found
    clearly worse than the active version and ``force`` is off: ``PromotionRefused``."""
    version_require_ready(version)
    if not force:
        check = promotion_check(version=version)
        if check.needs_force:
            raise PromotionRefused(check)
    return job_start(kind=JobKind.PROMOTE, version=version, user=user)


def scoring_start(
    *,
    version: SelectorVersion | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> Job:
    """Score every candidate ``version`` (default: the active one) has not scored yet."""
    version = version or selector_active()
    if version is None:
        raise SelectorError("no active selector version to score with: train or promote one")
    return job_start(kind=JobKind.SCORE, version=version, user=user)
