"""One way to change the active selector version, with one lock order (``version_activate``)."""

import time

import pytest
from django.db import transaction

from selector.models import SelectorVersion, VersionStatus
from selector.services import SelectorError
from selector.services.versions import version_activate
from tests.labeling.test_queue_concurrency import run_at_once


def ready(name: str, *, active: bool = False) -> SelectorVersion:
    return SelectorVersion.objects.create(
        name=name, base_model="-", status=VersionStatus.READY, is_active=active
    )


def active_names() -> list[str]:
    return list(SelectorVersion.objects.filter(is_active=True).values_list("name", flat=True))


@pytest.mark.django_db
def test_activating_switches_the_one_active_version_and_stamps_it():
    ready("old", active=True)
    new = ready("new")
    assert version_activate(version=new) is True
    assert active_names() == ["new"]
    new.refresh_from_db()
    assert new.promoted_at is not None


@pytest.mark.django_db
def test_unless_one_is_active_leaves_the_active_version_alone():
    ready("current", active=True)
    candidate = ready("candidate")
    assert version_activate(version=candidate, unless_one_is_active=True) is False
    assert active_names() == ["current"]
    SelectorVersion.objects.update(is_active=False)
    assert version_activate(version=candidate, unless_one_is_active=True) is True
    assert active_names() == ["candidate"]


@pytest.mark.django_db
def test_a_version_that_is_not_ready_is_never_activated():
    ready("current", active=True)
    failed = SelectorVersion.objects.create(name="f", base_model="-", status=VersionStatus.FAILED)
    with pytest.raises(SelectorError, match="not ready"):
        version_activate(version=failed)
    assert active_names() == ["current"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_first_activations_at_once_make_exactly_one_active():
    """With no version active there is no row to lock: the advisory lock decides. Without it
    both would see none active and the second would fail on the one-active index."""
    versions = [ready("first-a"), ready("first-b")]

    def activate_and_linger(index: int) -> bool:
        with transaction.atomic():
            activated = version_activate(version=versions[index], unless_one_is_active=True)
            time.sleep(0.3)  # the other one decides while this transaction is still open
            return activated

    results = run_at_once(2, activate_and_linger)
    assert sorted(results) == [False, True]
    assert len(active_names()) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_simultaneous_switches_never_deadlock_and_leave_one_active():
    ready("start", active=True)
    versions = [ready(f"v{i}") for i in range(6)]

    def activate(index: int) -> bool:
        with transaction.atomic():
            activated = version_activate(version=versions[index])
            time.sleep(0.05)
            return activated

    assert run_at_once(len(versions), activate) == [True] * len(versions)
    assert len(active_names()) == 1 and active_names() != ["start"]
