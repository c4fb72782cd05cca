"""Selector versions: naming, the base version, loading a scorer, the active one, permissions."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from selector.models import SelectorVersion, VersionStatus
from selector.services.common import SelectorError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ML_STAFF_GROUP = "ml-staff"


def version_name_default(prefix: str) -> str:
    return f"{prefix}-{timezone.now():%Y%m%d-%H%M%S-%f}"


def version_dir(name: str) -> Path:
    if not _NAME_RE.match(name):
        raise SelectorError(
            f"name {name!r}: use letters, digits, '.', '_' or '-' (it becomes a directory name)"
        )
    if SelectorVersion.objects.filter(name=name).exists():
        raise SelectorError(f"name {name!r}: a selector version with this name already exists")
    path = Path(settings.SELECTOR_CHECKPOINT_DIR) / name
    if path.exists() and any(path.iterdir()):
        raise SelectorError(f"name {name!r}: checkpoint directory {path} is not empty")
    return path


def base_model_path(base_model: str | None) -> str:
    """A local directory for ``base_model`` (else ``SELECTOR_BASE_MODEL``, else the packaged
    MiniLM). A Hugging Face hub id is fetched into the HF cache when online."""
    from selector.ml.prm import default_base_model, resolve_model_path

    name = base_model or settings.SELECTOR_BASE_MODEL
    if not name:
        return default_base_model()
    try:
        return resolve_model_path(name)
    except FileNotFoundError as exc:
        raise SelectorError(str(exc)) from exc


def scorer_load(version: SelectorVersion) -> Any:
    from selector.ml.scoring import Scorer

    if not version.checkpoint_path:
        raise SelectorError(f"selector {version.name} has no checkpoint")
    return Scorer.load(
        version.checkpoint_path,
        device=settings.SELECTOR_DEVICE,
        token_budget=settings.SELECTOR_TOKEN_BUDGET,
        max_length=settings.SELECTOR_MAX_LENGTH,
    )


def version_require_ready(version: SelectorVersion) -> None:
    if version.status != VersionStatus.READY:
        raise SelectorError(
            f"selector {version.name} is {version.get_status_display().lower()}, not ready"
        )


def selector_active() -> SelectorVersion | None:
    return SelectorVersion.objects.filter(is_active=True).first()


def version_activate(*, version: SelectorVersion, unless_one_is_active: bool = False) -> bool:
    """Make ``version`` (a saved, ready version) the one active selector; returns whether it is.

    Every change of the active version goes through here, with one lock order, so two of
    them never deadlock and never both win: (a caller's own ``Job`` row first, then) the
    "active selector" lock (a PostgreSQL advisory lock: it also covers the moment when no
    version is active, which no row lock can), then the rows of the active version and of
    ``version``, by id. With ``unless_one_is_active`` it does nothing when another version is
    active (decided under the locks). Runs in the caller's transaction (or its own).
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('stepwise.selector_active'))")
        rows = {
            row.pk: row
            for row in SelectorVersion.objects.select_for_update()
            .filter(Q(is_active=True) | Q(pk=version.pk))
            .order_by("pk")
        }
        if version.pk not in rows:
            raise SelectorError(f"selector {version.name} does not exist (any more)")
        version_require_ready(rows[version.pk])
        others = [pk for pk, row in rows.items() if row.is_active and pk != version.pk]
        if others and unless_one_is_active:
            return False
        now = timezone.now()
        SelectorVersion.objects.filter(pk__in=others).update(is_active=False)
        SelectorVersion.objects.filter(pk=version.pk).update(is_active=True, promoted_at=now)
    version.is_active, version.promoted_at = True, now
    return True


def selector_permissions_grant() -> Group:
    """Create (or update) the ``ml-staff`` group: run the selector loop, read-only on labeling
    data. Members also need ``is_staff`` to enter the admin."""
    group, _ = Group.objects.get_or_create(name=ML_STAFF_GROUP)
    # Run the loop (view/change versions, scores, jobs; start jobs), never delete history.
    codenames = [
        f"{action}_{model}"
        for model in ("selectorversion", "solutionscore")
        for action in ("view", "change")
    ] + ["view_evalset", "add_evalset"]  # freeze a new evaluation set
    selector_perms = Permission.objects.filter(
        content_type__app_label="selector", codename__in=codenames
    ) | Permission.objects.filter(
        content_type__app_label="jobs", codename__in=["view_job", "change_job", "add_job"]
    )
    labeling_reads = Permission.objects.filter(
        content_type__app_label="labeling", codename__startswith="view_"
    )
    perms = selector_perms | labeling_reads
    group.permissions.add(*perms)
    return group


# --- Base version and scoring ---------------------------------------------------------------


def selector_create_base(
    *, base_model: str | None = None, name: str | None = None, activate: bool | None = None
) -> SelectorVersion:
    """A fresh, untrained PRM from a local Hugging Face model directory.

    With ``activate=None`` the version becomes active only when no version is active yet, so
    the pool can be scored and the first queue filled before any label exists.
    """
    from selector.ml.prm import prm_init

    base = base_model_path(base_model)
    name = name or version_name_default("base")
    output_dir = version_dir(name)
    prm_init(base_model=base, output_dir=output_dir)
    return _ready_version_record(
        name=name,
        base_model=base,
        output_dir=output_dir,
        summary={"init": "base", "base_model": base},
        activate=activate,
    )


def selector_import(
    *, model: str, adapter: str, name: str | None = None, activate: bool = False
) -> SelectorVersion:
    """Register an existing open PRM (local directory or hub id) as a ready version that scores
    through ``adapter`` (``selector.ml.adapters``). The weights are not copied: the version's
    checkpoint directory only points at them."""
    from selector.ml.adapters import adapter_write

    path = base_model_path(model)
    name = name or version_name_default(f"import-{adapter}")
    output_dir = version_dir(name)
    try:
        facts = adapter_write(adapter=adapter, model_path=path, output_dir=output_dir)
    except (ValueError, FileNotFoundError, OSError) as exc:
        shutil.rmtree(output_dir, ignore_errors=True)
        raise SelectorError(f"{model}: {exc}") from exc
    return _ready_version_record(
        name=name,
        base_model=path,
        output_dir=output_dir,
        summary={"init": "import", "model": model, **facts},
        activate=activate,
    )


def _ready_version_record(
    *,
    name: str,
    base_model: str,
    output_dir: Path,
    summary: dict[str, Any],
    activate: bool | None,
) -> SelectorVersion:
    """The row of a ready version whose checkpoint directory is written, active if asked
    (``None``: only when no version is); the directory goes if the row cannot be written."""
    try:
        with transaction.atomic():
            version = SelectorVersion.objects.create(
                name=name,
                base_model=base_model,
                checkpoint_path=str(output_dir),
                status=VersionStatus.READY,
                training_summary=summary,
            )
            if activate is not False:
                version_activate(version=version, unless_one_is_active=activate is None)
            return version
    except Exception:
        shutil.rmtree(output_dir, ignore_errors=True)
        raise
