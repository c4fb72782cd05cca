"""The admin's promotion that asks, and its evaluation-set lifecycle (freeze, refuse)."""

from typing import Any

from django.contrib.admin.models import LogEntry
from django.urls import reverse

from jobs.models import Job, JobKind
from selector.models import EvalSet, SelectorVersion, VersionStatus
from tests.factories import UserFactory

WORSE = {
    "version": "challenger",
    "step": {"auroc": 0.55},
    "compared_with": {"version": "incumbent", "step": {"auroc": 0.76}},
    "eval_set": {"id": 1, "labels": 40, "problems": 9},
    "held_out": {"labels": 40},
    "comparison": {
        "against": "incumbent",
        "intervals": {"step.auroc": {"diff": -0.21, "low": -0.34, "high": -0.02}},
    },
}


def version(name: str, *, active: bool = False, metrics: Any = None) -> SelectorVersion:
    return SelectorVersion.objects.create(
        name=name, base_model="-", status=VersionStatus.READY, is_active=active,
        metrics=metrics or {},
    )  # fmt: skip


def test_promote_asks_and_a_worse_version_needs_a_second_confirmation(staff_client, db):
    version("incumbent", active=True)
    worse = version("challenger", metrics=WORSE)
    url = reverse("admin:selector_selectorversion_promote", args=[worse.pk])
    # The old start URL no longer promotes at once: it leads to the confirmation page.
    start = reverse("admin:selector_selectorversion_start_for", args=[worse.pk, "promote"])
    assert staff_client.post(start)["Location"] == url
    page = staff_client.get(url).content.decode()
    assert 'data-verdict="worse"' in page
    assert "0.550" in page and "0.760" in page and "-0.210 [-0.340, -0.020]" in page
    first = staff_client.post(url, {"confirm": "1"})
    assert first.status_code == 200 and 'id="second-confirmation"' in first.content.decode()
    assert not Job.objects.exists()
    second = staff_client.post(url, {"confirm": "1", "confirm_worse": "1"})
    job = Job.objects.get()
    assert (job.kind, job.version) == (JobKind.PROMOTE, worse)
    assert second["Location"] == reverse("admin:jobs_job_change", args=[job.pk])


def test_promote_of_a_better_version_asks_once(staff_client, db):
    version("incumbent", active=True)
    better = {**WORSE, "comparison": {"against": "incumbent", "intervals": {
        "step.auroc": {"diff": 0.2, "low": 0.1, "high": 0.3}}}}  # fmt: skip
    challenger = version("challenger", metrics=better)
    url = reverse("admin:selector_selectorversion_promote", args=[challenger.pk])
    assert 'data-verdict="better"' in staff_client.get(url).content.decode()
    assert staff_client.post(url, {"confirm": "1"}).status_code == 302
    assert Job.objects.get().version == challenger


def test_promote_page_needs_the_job_permission(client, db):
    target = version("challenger", metrics=WORSE)
    client.force_login(UserFactory(username="clerk", is_staff=True))
    url = reverse("admin:selector_selectorversion_promote", args=[target.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"confirm": "1", "confirm_worse": "1"}).status_code == 403
    assert not Job.objects.exists()


def test_evaluate_against_an_empty_set_is_refused_with_how_to_get_labels(staff_client, db):
    target = version("v1")
    url = reverse("admin:selector_selectorversion_start_for", args=[target.pk, "evaluate"])
    page = staff_client.post(url, follow=True).content.decode()
    assert "Not enough evaluation labels yet" in page and "Fill queue" in page
    assert not Job.objects.exists() and not EvalSet.objects.exists()


def test_freezing_a_new_eval_set_is_permission_checked_and_recorded(staff_client, ml_staff, db):
    url = reverse("admin:selector_evalset_freeze")
    changelist = staff_client.get(reverse("admin:selector_evalset_changelist"))
    assert 'id="freeze-eval-set"' in changelist.content.decode()
    assert staff_client.get(url).status_code == 405
    response = staff_client.post(url, follow=True)
    first = EvalSet.objects.get()
    assert first.created_by == ml_staff and first.changes["previous"] is None
    assert f"Froze evaluation set {first.pk}: 0 labels on 0 problems" in response.content.decode()
    staff_client.post(url)
    second = EvalSet.objects.order_by("-pk").first()
    assert second.changes["previous"] == first.pk
    assert (second.changes["added"], second.changes["removed"]) == (0, 0)
    assert LogEntry.objects.filter(object_id=str(second.pk)).count() == 1


def test_freezing_needs_the_add_permission(client, db):
    viewer = UserFactory(username="viewer", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_evalset"))
    client.force_login(viewer)
    page = client.get(reverse("admin:selector_evalset_changelist")).content.decode()
    assert 'id="freeze-eval-set"' not in page
    assert client.post(reverse("admin:selector_evalset_freeze")).status_code == 403
    assert not EvalSet.objects.exists()


def test_version_page_shows_the_eval_set_and_raw_json_only_behind_a_toggle(staff_client, db):
    first = EvalSet.objects.create(label_ids=[1, 2, 3], problems=2, fraction=0.1, seed=0)
    newer = EvalSet.objects.create(label_ids=[1, 2, 3, 4], problems=2, fraction=0.1, seed=0)
    version("incumbent", active=True)
    metrics = {**WORSE, "eval_set": {**WORSE["eval_set"], "id": first.pk}}
    shown = version("challenger", metrics=metrics)
    shown.training_summary = {"train_labels": 12, "seconds": 3.5, "epoch_loss": [0.9, 0.7]}
    shown.save()
    page = staff_client.get(
        reverse("admin:selector_selectorversion_change", args=[shown.pk])
    ).content.decode()
    assert f"Measured on evaluation set {first.pk}: 40 labels on 9 problems." in page
    assert f"A newer set exists (set {newer.pk}, 4 labels)" in page
    changelist = staff_client.get(reverse("admin:selector_selectorversion_changelist"))
    assert f"{first.pk} (40)" in changelist.content.decode()  # the set and its labels
    assert "<td>Training labels</td><td>12 labels</td>" in page
    assert "<td>Time taken</td><td>3.5 s</td>" in page
    # JSON appears only inside the <details> toggles.
    outside = page.split("<details", 1)[0]
    assert '"train_labels"' not in outside and '{"' not in outside
    assert "&quot;train_labels&quot;: 12" in page
