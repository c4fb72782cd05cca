"""The admin "Import JSONL" pages: staff upload a small file through the import services."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import Grade, Label, Problem, Solution
from tests.factories import ProblemFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def upload(name, *records):
    body = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    return SimpleUploadedFile(name, body.encode(), content_type="application/jsonl")


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.mark.parametrize("model", ["problem", "solution", "label"])
def test_changelists_show_the_import_button(staff_client, model):
    response = staff_client.get(reverse(f"admin:labeling_{model}_changelist"))
    assert response.status_code == 200
    assert reverse(f"admin:labeling_{model}_import_jsonl").encode() in response.content


def test_candidate_upload_imports_and_queues_grading_after_commit(
    staff_client, django_capture_on_commit_callbacks
):
    ProblemFactory(unique_id="p/1", answer="3")
    url = reverse("admin:labeling_solution_import_jsonl")
    assert staff_client.get(url).status_code == 200
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(
            url,
            {"file": upload("c.jsonl", {"unique_id": "p/1", "steps": ["# Answer\n\n3"]})},
            follow=True,
        )
    assert response.redirect_chain[-1][0] == reverse("admin:labeling_solution_changelist")
    assert "c.jsonl: 1 of 1 lines valid; created 1 solutions" in messages_of(response)
    assert len(callbacks) == 1  # grade_solutions.delay, after commit
    # Nothing was graded inside the request.
    assert Solution.objects.get().grade == Grade.UNGRADED


def test_upload_with_invalid_lines_imports_nothing_and_shows_each_error(staff_client):
    response = staff_client.post(
        reverse("admin:labeling_problem_import_jsonl"),
        {
            "file": upload(
                "p.jsonl",
                {"unique_id": "a", "problem": "1+1?", "answer": "2"},
                "oops",
                {"unique_id": "b", "problem": "", "answer": "2"},
            )
        },
    )
    assert response.status_code == 200
    shown = messages_of(response)
    assert "p.jsonl:2: line: invalid JSON: Expecting value at column 1" in shown
    assert "p.jsonl:3: problem: must not be empty" in shown
    assert any("nothing was imported" in m for m in shown)
    assert not Problem.objects.exists()


def test_upload_with_skip_invalid_imports_the_valid_lines(staff_client, shared_data):
    record = (shared_data / "prm800k_phase2_sample.jsonl").read_text().splitlines()[0]
    response = staff_client.post(
        reverse("admin:labeling_label_import_jsonl"),
        {"file": upload("r.jsonl", record, "{}"), "skip_invalid": "on"},
        follow=True,
    )
    shown = messages_of(response)
    assert "r.jsonl:2: labeler: is required" in shown
    assert Label.objects.count() == 1


def test_non_staff_cannot_reach_the_import_page(client):
    client.force_login(UserFactory())
    response = client.get(reverse("admin:labeling_problem_import_jsonl"))
    assert response.status_code == 302  # to the admin login
