"""Every URL by every kind of user: the status each one gets (docs/decisions/0010).

The matrix below is the policy, written out cell by cell. A URL added to the URLconf without a
row here fails ``test_every_url_in_the_urlconf_has_a_row``, so nothing is left unchecked.
Requests carry no valid body: an endpoint a user may call answers 400/405/204 rather than 403,
which is all this test needs to tell "allowed" from "refused". Behaviour beyond the door is
tested next to each feature.
"""

import re
from dataclasses import dataclass
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token

from jobs.models import Job, JobKind, JobStatus
from labeling.models import (
    AnnotatorProfile,
    GradedAnswer,
    Lease,
    Problem,
    QualitySettings,
    Task,
    TaskKind,
)
from labeling.services.export_jobs import export_path
from labeling.services.quality import quality_settings_get
from selector.models import EvalSet, SelectorVersion
from selector.services import selector_permissions_grant
from tests.factories import LabelFactory, TaskFactory, UserFactory, annotator

ROLES = ["anonymous", "annotator", "paused", "unscreened", "ml_staff", "bare_staff", "superuser"]

# route (as the URLconf spells it) + method  ->  status for each role, in ROLES order:
#                                                       anon ann pau uns ml  bare super
# Admin pages send anyone who is not active staff to the admin sign-in (302). Inside, staff
# see only what their permissions allow (403, or 404 for an app with nothing visible).
# ML staff: view every labeling model (annotator profiles included, never change them), the
# dashboard, and run the selector loop; no exports, no users, no pausing.
A = "302 302 302 302"  # the four non-staff roles on an admin page
MATRIX: dict[tuple[str, str], str] = {
    ("", "GET"): "302 302 302 302 302 302 302",
    # --- the annotator's page and sign-in ---
    ("label/", "GET"): "302 200 200 200 200 200 200",
    ("accounts/login/", "GET"): "200 200 200 200 200 200 200",
    ("accounts/logout/", "POST"): "302 302 302 302 302 302 302",
    # --- API: annotators (staff may label too: gold authors) ---
    # In this order: the claim gets the screened annotator task 1, those not yet screened (staff
    # too) the screening question, the paused one nothing; so heartbeat and skip on task 1 find
    # their lease or not (404). Staff count as annotators (labeling.queries.user_is_annotator),
    # ML staff included.
    ("api/queue/next/", "POST"): "403 200 204 200 200 200 200",
    ("api/queue/next/", "GET"): "403 405 405 405 405 405 405",
    ("api/tasks/<id:task_id>/heartbeat/", "POST"): "403 200 404 404 404 404 404",
    ("api/tasks/<id:task_id>/submit/", "POST"): "403 400 400 400 400 400 400",
    ("api/tasks/<id:task_id>/skip/", "POST"): "403 204 404 404 404 404 404",
    ("api/me/", "GET"): "403 200 200 200 200 200 200",
    # --- API: exports need labeling.export_labels ---
    ("api/export/prm800k/", "GET"): "403 403 403 403 403 403 200",
    ("api/export/stepwise/", "GET"): "403 403 403 403 403 403 200",
    ("api/export/jobs/", "GET"): "403 403 403 403 403 403 200",
    ("api/export/jobs/", "POST"): "403 403 403 403 403 403 202",
    ("api/export/jobs/<id:job_id>/", "GET"): "403 403 403 403 403 403 200",
    ("api/export/jobs/<id:job_id>/download/", "GET"): "403 403 403 403 403 403 200",
    # --- API: imports need the admin's add permission on what they add (415: the matrix
    # posts JSON, not JSONL) ---
    ("api/imports/problems/", "POST"): "403 403 403 403 403 403 415",
    ("api/imports/candidates/", "POST"): "403 403 403 403 403 403 415",
    ("api/imports/prm800k/", "POST"): "403 403 403 403 403 403 415",
    # --- API: the selector loop needs jobs.add_job (202: a job started; 400: the matrix's
    # version is still training), versions need view_selectorversion ---
    ("api/selector/train/", "POST"): "403 403 403 403 202 403 202",
    ("api/selector/evaluate/", "POST"): "403 403 403 403 400 403 400",
    ("api/selector/promote/", "POST"): "403 403 403 403 400 403 400",
    ("api/selector/score/", "POST"): "403 403 403 403 400 403 400",
    ("api/selector/fill/", "POST"): "403 403 403 403 202 403 202",
    ("api/selector/generate/", "POST"): "403 403 403 403 400 403 400",  # no model given
    ("api/selector/versions/", "GET"): "403 403 403 403 200 403 200",
    # --- API: a job, for whoever may view jobs or started it (the matrix's is the
    # superuser's finished export: cancelling it is a conflict) ---
    ("api/jobs/<id:job_id>/", "GET"): "403 404 404 404 200 404 200",
    ("api/jobs/<id:job_id>/cancel/", "POST"): "403 404 404 404 409 404 409",
    # Retrying an export needs the export permission too (ML staff lack it); the superuser's
    # succeeded, so it is a conflict.
    ("api/jobs/<id:job_id>/retry/", "POST"): "403 404 404 404 403 404 409",
    # --- API docs: public, like the API's shape ---
    ("api/schema/", "GET"): "200 200 200 200 200 200 200",
    ("api/docs/", "GET"): "200 200 200 200 200 200 200",
    # --- dashboard: view_dashboard; pausing: change_annotatorprofile ---
    ("admin/dashboard/", "GET"): f"{A} 200 403 200",
    ("admin/dashboard/plots/<slug:name>.png", "GET"): f"{A} 200 403 200",
    ("admin/dashboard/annotators/<id:profile_id>/pause/", "POST"): f"{A} 403 403 302",
    # --- admin site ---
    ("admin/", "GET"): f"{A} 200 200 200",
    ("admin/login/", "GET"): "200 200 200 200 302 302 302",
    ("admin/logout/", "POST"): "302 302 302 302 302 302 302",
    ("admin/password_change/", "GET"): f"{A} 200 200 200",
    ("admin/password_change/done/", "GET"): f"{A} 200 200 200",
    ("admin/autocomplete/", "GET"): f"{A} 403 403 403",
    ("admin/jsi18n/", "GET"): f"{A} 200 200 200",
    ("admin/r/<path:content_type_id>/<path:object_id>/", "GET"): f"{A} 404 404 404",
    (
        "admin/^(?P<app_label>auth|authtoken|axes|labeling|jobs|selector)/$",
        "GET",
    ): f"{A} 200 404 200",
    ("admin/(?P<url>.*)$", "GET"): f"{A} 404 404 404",
    # Custom admin views.
    ("admin/labeling/label/export/", "GET"): f"{A} 403 403 200",
    # "file": the response is the JSONL download; ML staff get the changelist back instead.
    ("admin/labeling/label/", "POST export action"): f"{A} 200 403 file",
    ("admin/labeling/problem/import-jsonl/", "GET"): f"{A} 403 403 200",
    ("admin/labeling/solution/import-jsonl/", "GET"): f"{A} 403 403 200",
    ("admin/labeling/label/import-jsonl/", "GET"): f"{A} 403 403 200",
    ("admin/selector/selectorversion/start/<str:kind>/", "POST"): f"{A} 302 403 302",
    ("admin/selector/selectorversion/import/", "GET"): f"{A} 200 403 200",
    ("admin/selector/selectorversion/<path:object_id>/start/<str:kind>/", "POST"): (
        f"{A} 302 403 302"
    ),
    ("admin/selector/selectorversion/<path:object_id>/plot/<str:which>.png", "GET"): (
        f"{A} 200 403 200"
    ),
    ("admin/selector/selectorversion/<path:object_id>/benchmark/", "POST"): f"{A} 302 403 302",
    # Promotion asks first (its confirmation page); freezing an evaluation set needs
    # selector.add_evalset (ML staff have it).
    ("admin/selector/selectorversion/<path:object_id>/promote/", "GET"): f"{A} 200 403 200",
    ("admin/selector/evalset/freeze/", "POST"): f"{A} 302 403 302",
    # A simulation job's files: for whoever may view jobs (the matrix's job is an export, so
    # those allowed through the door get 404).
    ("admin/selector/selectorversion/simulation/<int:job_id>/<str:name>", "GET"): (
        f"{A} 404 403 404"
    ),
    ("admin/jobs/job/<path:object_id>/progress/", "GET"): f"{A} 200 403 200",
    ("admin/jobs/job/<path:object_id>/cancel/", "POST"): f"{A} 302 403 302",
    ("admin/auth/user/<id>/password/", "GET"): f"{A} 403 403 200",
}


@dataclass(frozen=True)
class ModelRow:
    """The standard admin pages of one model, and what ML staff and superusers get on each."""

    prefix: str  # <app>/<model>/ under admin/
    ml: str  # changelist add history delete change redirect
    superuser: str


# Bare staff get 403 on every model page but the bare object URL, a redirect to its change page.
MODEL_PAGES = ["", "add/", "<path:object_id>/history/", "<path:object_id>/delete/",
               "<path:object_id>/change/", "<path:object_id>/"]  # fmt: skip
BARE_STAFF = ["403", "403", "403", "403", "403", "302"]
MODELS = [
    ModelRow("auth/group/", "403 403 403 403 403 302", "200 200 200 200 200 302"),
    ModelRow("auth/user/", "403 403 403 403 403 302", "200 200 200 200 200 302"),
    ModelRow("authtoken/tokenproxy/", "403 403 403 403 403 302", "200 200 200 200 200 302"),
    ModelRow("axes/accessattempt/", "403 403 403 403 403 302", "200 403 200 200 200 302"),
    ModelRow("axes/accesslog/", "403 403 403 403 403 302", "200 403 200 200 200 302"),
    ModelRow("axes/accessfailurelog/", "403 403 403 403 403 302", "200 403 200 200 200 302"),
    ModelRow("labeling/qualitysettings/", "302 403 200 403 200 302", "302 403 200 403 200 302"),
    ModelRow("labeling/problem/", "200 403 200 403 200 302", "200 200 200 200 200 302"),
    ModelRow("labeling/solution/", "200 403 200 403 200 302", "200 200 200 200 200 302"),
    ModelRow("labeling/gradedanswer/", "200 403 200 403 200 302", "200 200 200 200 200 302"),
    ModelRow("labeling/task/", "200 403 200 403 200 302", "200 200 200 200 200 302"),
    ModelRow("labeling/lease/", "200 403 200 403 200 302", "200 200 200 200 200 302"),
    ModelRow("labeling/label/", "200 403 200 403 200 302", "200 200 200 200 200 302"),
    ModelRow("labeling/annotatorprofile/", "200 403 200 403 200 302", "200 200 200 200 200 302"),
    ModelRow("selector/selectorversion/", "200 403 200 403 200 302", "200 403 200 200 200 302"),
    ModelRow("jobs/job/", "200 403 200 403 200 302", "200 403 200 200 200 302"),
    ModelRow("selector/evalset/", "200 403 200 403 200 302", "200 403 200 403 200 302"),
]  # fmt: skip
for _row in MODELS:
    for _page, _ml, _bare, _su in zip(
        MODEL_PAGES, _row.ml.split(), BARE_STAFF, _row.superuser.split(), strict=True
    ):
        MATRIX[("admin/" + _row.prefix + _page, "GET")] = f"{A} {_ml} {_bare} {_su}"


def _walk(patterns: list[Any], prefix: str = "") -> list[str]:
    routes: list[str] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            routes += _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            routes.append(prefix + str(pattern.pattern))
    return routes


def test_every_url_in_the_urlconf_has_a_row() -> None:
    routes = set(_walk(get_resolver().url_patterns))
    covered = {route for route, _method in MATRIX}
    assert routes - covered == set(), "add these URLs to the permission matrix"
    assert covered - routes == set(), "these rows name URLs that no longer exist"


# --- the world the requests run in -------------------------------------------------------------


@pytest.fixture
def world(db: None, settings: Any, tmp_path: Any) -> dict[str, Any]:
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_DIR.mkdir()
    quality_settings_get()
    ml_group = selector_permissions_grant()
    users: dict[str, Any] = {
        "annotator": annotator("ann"),
        "paused": annotator("pau"),
        "unscreened": annotator("uns"),
        "ml_staff": UserFactory(username="ml", is_staff=True),
        "bare_staff": UserFactory(username="bare", is_staff=True),
        "superuser": UserFactory(username="root", is_staff=True, is_superuser=True),
    }
    AnnotatorProfile.objects.filter(user__username__in=["ann", "pau"]).update(screening_passed=True)
    AnnotatorProfile.objects.filter(user__username="pau").update(is_paused=True)
    users["ml_staff"].groups.add(ml_group)
    victim = annotator("victim")  # the one the pause buttons are pressed on

    task = TaskFactory()
    label = LabelFactory(task=task, annotator=victim)
    # A screening set with gold, so the unscreened annotator really has screening to do.
    gold = LabelFactory(task=TaskFactory(kind=TaskKind.SCREENING), is_gold=True)
    Task.objects.filter(pk=gold.task_id).update(gold_label=gold)
    lease = Lease.objects.create(
        task=TaskFactory(),
        annotator=victim,
        expires_at=timezone.now() + timezone.timedelta(hours=1),
    )
    problem = task.solution.problem
    graded = GradedAnswer.objects.create(problem=problem, answer="4", grade="correct")
    version = SelectorVersion.objects.create(name="v-matrix", base_model="/nowhere")
    eval_set = EvalSet.objects.create(label_ids=[label.pk], problems=1, fraction=0.1, seed=0)
    job = Job.objects.create(
        kind=JobKind.EXPORT,
        status=JobStatus.SUCCEEDED,
        params={"format": "prm800k", "token": "matrix"},
        result={"filename": "prm800k.jsonl"},
        created_by=users["superuser"],
    )
    export_path(job).write_text("{}\n")
    token = Token.objects.create(user=victim)
    attempt = AccessAttempt.objects.create(
        username="x", ip_address="10.0.0.9", user_agent="t", get_data="", post_data="",
        http_accept="", path_info="/", failures_since_start=1,
    )  # fmt: skip
    log = AccessLog.objects.create(username="x", ip_address="10.0.0.9", user_agent="t")
    failure = AccessFailureLog.objects.create(username="x", ip_address="10.0.0.9", user_agent="t")
    objects = {
        "admin/auth/group/": ml_group.pk,
        "admin/auth/user/": victim.pk,
        "admin/authtoken/tokenproxy/": token.user_id,  # DRF's token admin goes by user
        "admin/axes/accessattempt/": attempt.pk,
        "admin/axes/accesslog/": log.pk,
        "admin/axes/accessfailurelog/": failure.pk,
        "admin/labeling/qualitysettings/": QualitySettings.objects.get().pk,
        "admin/labeling/problem/": problem.pk,
        "admin/labeling/solution/": task.solution.pk,
        "admin/labeling/gradedanswer/": graded.pk,
        "admin/labeling/task/": task.pk,
        "admin/labeling/lease/": lease.pk,
        "admin/labeling/label/": label.pk,
        "admin/labeling/annotatorprofile/": victim.annotator_profile.pk,
        "admin/selector/selectorversion/": version.pk,
        "admin/selector/evalset/": eval_set.pk,
        "admin/jobs/job/": job.pk,
    }
    return {
        "users": users,
        "objects": objects,
        "task": task,
        "job": job,
        "version": version,
        "victim": victim,
        "label": label,
        "problem_ct": ContentType.objects.get_for_model(Problem).pk,
        "problem": problem,
    }


def concrete(route: str, world: dict[str, Any]) -> str:
    """The route with real ids (and names) filled in."""
    special = {
        "admin/^(?P<app_label>auth|authtoken|axes|labeling|jobs|selector)/$": "admin/labeling/",
        "admin/(?P<url>.*)$": "admin/no-such-page/",
        "admin/r/<path:content_type_id>/<path:object_id>/": (
            f"admin/r/{world['problem_ct']}/{world['problem'].pk}/"
        ),
        "admin/auth/user/<id>/password/": f"admin/auth/user/{world['victim'].pk}/password/",
        "admin/selector/selectorversion/start/<str:kind>/": (
            "admin/selector/selectorversion/start/fill/"
        ),
        "admin/selector/selectorversion/<path:object_id>/start/<str:kind>/": (
            f"admin/selector/selectorversion/{world['version'].pk}/start/evaluate/"
        ),
        "admin/selector/selectorversion/<path:object_id>/plot/<str:which>.png": (
            f"admin/selector/selectorversion/{world['version'].pk}/plot/roc.png"
        ),
        "admin/selector/selectorversion/<path:object_id>/benchmark/": (
            f"admin/selector/selectorversion/{world['version'].pk}/benchmark/"
        ),
        "admin/selector/selectorversion/simulation/<int:job_id>/<str:name>": (
            f"admin/selector/selectorversion/simulation/{world['job'].pk}/curves_labels.png"
        ),
        "admin/jobs/job/<path:object_id>/cancel/": f"admin/jobs/job/{world['job'].pk}/cancel/",
        "admin/jobs/job/<path:object_id>/progress/": (
            f"admin/jobs/job/{world['job'].pk}/progress/"
        ),
    }
    if route in special:
        return "/" + special[route]
    path = route
    for prefix, pk in world["objects"].items():
        if path.startswith(prefix):
            path = path.replace("<path:object_id>", str(pk))
    path = path.replace("<id:task_id>", str(world["task"].pk))
    path = path.replace("<id:job_id>", str(world["job"].pk))
    path = path.replace("<id:profile_id>", str(world["victim"].annotator_profile.pk))
    path = path.replace("<slug:name>", "ratings")
    assert not re.search(r"[<>^$(]", path), f"no concrete form for {route!r}"
    return "/" + path


def request(client: Client, method: str, path: str, world: dict[str, Any]) -> Any:
    """The response, or for the export action a string: "file" when it was the download."""
    if method == "GET":
        return client.get(path)
    if method == "POST export action":
        form = {"action": "export_selected_prm800k", "_selected_action": [world["label"].pk]}
        response = client.post(path, form)
        attachment = "attachment" in response.get("Content-Disposition", "")
        return "file" if response.status_code == 200 and attachment else str(response.status_code)
    if path.startswith("/api/"):
        return client.post(path, {}, content_type="application/json")
    if "/pause/" in path:
        return client.post(path, {"paused": "1"})
    return client.post(path)


@pytest.mark.parametrize("role", ROLES)
def test_each_url_answers_each_role_as_the_matrix_says(role: str, world: dict[str, Any]) -> None:
    column = ROLES.index(role)
    got: dict[tuple[str, str], str] = {}
    wrong: list[str] = []
    for (route, method), statuses in MATRIX.items():
        client = Client()
        if role != "anonymous":
            client.force_login(world["users"][role])
        path = concrete(route, world)
        answer = request(client, method, path, world)
        status = answer if isinstance(answer, str) else str(answer.status_code)
        got[(route, method)] = status
        expected = statuses.split()[column]
        if status != expected:
            wrong.append(f"{method} {path} ({route}): expected {expected}, got {status}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


def test_ml_staff_cannot_pause_from_the_admin_either(world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(world["users"]["ml_staff"])
    profile = world["victim"].annotator_profile
    client.post(
        "/admin/labeling/annotatorprofile/",
        {"action": "pause_annotators", "_selected_action": [profile.pk]},
    )
    profile.refresh_from_db()
    assert profile.is_paused is False
    assert not User.objects.get(username="ml").has_perm("labeling.change_annotatorprofile")
    assert Group.objects.get(name="ml-staff").permissions.filter(codename="view_dashboard")
