"""Starting the selector's background jobs: which kinds it runs, and their checks.

The generic life of a job (queue, heartbeat, reaper) is ``jobs.services``; what each kind runs
is ``selector.services.job_runs``; its parameters are ``selector.services.job_params``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from jobs.models import Job, JobKind
from jobs.services import job_create
from selector.models import SelectorVersion
from selector.services.common import SelectorError
from selector.services.versions import version_require_ready

SELECTOR_KINDS = {
    JobKind.TRAIN,
    JobKind.EVALUATE,
    JobKind.PROMOTE,
    JobKind.SCORE,
    JobKind.FILL,
    JobKind.BENCHMARK,
    JobKind.SIMULATE,
    JobKind.GENERATE,
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
    return job_create(
        kind=kind,
        params=params,
        user=user,
        version_id=version.pk if version is not None else None,
        enqueue=enqueue,
    )
