"""Selector versions: naming, the base version, loading a scorer, the active one, permissions."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction
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
    if base_model:
        return base_model
    if settings.SELECTOR_BASE_MODEL:
        return settings.SELECTOR_BASE_MODEL
    from selector.ml.prm import default_base_model

    return default_base_model()


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


def selector_permissions_grant() -> Group:
    """Create (or update) the ``ml-staff`` group: run the selector loop, read-only on labeling
    data. Members also need ``is_staff`` to enter the admin."""
    group, _ = Group.objects.get_or_create(name=ML_STAFF_GROUP)
    # Run the loop (view/change versions, scores, jobs; start jobs), never delete history.
    codenames = [
        f"{action}_{model}"
        for model in ("selectorversion", "solutionscore")
        for action in ("view", "change")
    ]
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
    if not Path(base).is_dir():
        raise SelectorError(f"base_model {base!r} is not a local model directory")
    name = name or version_name_default("base")
    output_dir = version_dir(name)
    prm_init(base_model=base, output_dir=output_dir)
    try:
        with transaction.atomic():
            make_active = (
                activate
                if activate is not None
                else not SelectorVersion.objects.select_for_update().filter(is_active=True).exists()
            )
            if make_active:
                SelectorVersion.objects.filter(is_active=True).update(is_active=False)
            return SelectorVersion.objects.create(
                name=name,
                base_model=base,
                checkpoint_path=str(output_dir),
                status=VersionStatus.READY,
                is_active=make_active,
                promoted_at=timezone.now() if make_active else None,
                training_summary={"init": "base", "base_model": base},
            )
    except Exception:
        shutil.rmtree(output_dir, ignore_errors=True)
        raise
