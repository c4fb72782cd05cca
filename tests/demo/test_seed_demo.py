"""`manage.py seed_demo`: the demo content, its queue and logins, and idempotency."""

import io
import re
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.http import HttpRequest
from django.test import Client

from demo.logins import DEMO_LOGINS
from demo.problems import DEMO_PROBLEMS, demo_candidate_count
from labeling.answers import ANSWER_MARKER, answer_extract
from labeling.models import (
    AnnotatorProfile,
    Grade,
    GradedAnswer,
    Problem,
    Solution,
    Task,
    TaskKind,
    text_sha256,
)
from tests.factories import ProblemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Three demo users per seed: the production hasher would dominate these tests' run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed(*args: str) -> str:
    """Seed without grading (starting math-verify costs seconds); one test grades for real."""
    out = io.StringIO()
    call_command("seed_demo", "--no-grade", *args, stdout=out)
    return out.getvalue()


def table_counts() -> tuple[int, int, int, int]:
    return (
        Problem.objects.count(),
        Solution.objects.count(),
        Task.objects.count(),
        User.objects.count(),
    )


def test_seed_creates_every_problem_candidate_and_a_task_for_each() -> None:
    seed()
    assert Problem.objects.count() == len(DEMO_PROBLEMS) >= 30
    assert Solution.objects.filter(source="demo", generator="demo-writer").count() == (
        demo_candidate_count()
    )
    per_problem = Counter(Solution.objects.values_list("problem_id", flat=True))
    assert all(4 <= n <= 6 for n in per_problem.values()), per_problem
    assert set(per_problem.values()) >= {4, 6}
    tasks = Task.objects.all()
    assert tasks.count() == Solution.objects.count()
    assert {(t.kind, t.generation, t.required_labels) for t in tasks} == {(TaskKind.NORMAL, 0, 1)}
    assert len({t.priority for t in tasks}) == tasks.count()  # a strict serving order


def test_first_tasks_served_cover_every_problem() -> None:
    seed()
    first = Task.objects.filter(kind=TaskKind.NORMAL).order_by("-priority", "id")
    first_problems = [t.solution.problem_id for t in first[: len(DEMO_PROBLEMS)]]
    assert len(set(first_problems)) == len(DEMO_PROBLEMS)


def test_problems_vary_subject_level_and_notation() -> None:
    seed()
    problems = list(Problem.objects.all())
    assert {p.subject for p in problems} == {
        "Algebra",
        "Number Theory",
        "Geometry",
        "Counting & Probability",
        "Precalculus",
        "Prealgebra",
        "Intermediate Algebra",
    }
    assert {p.level for p in problems} == {1, 2, 3, 4, 5}
    assert any("[asy]" in p.problem and "[/asy]" in p.problem for p in problems)
    assert any(r"\[" in p.problem for p in problems)
    assert any(r"\frac" in p.answer for p in problems)
    for p in problems:
        assert re.fullmatch(r"demo/[a-z_]+/\d+\.json", p.unique_id), p.unique_id
        assert p.problem_hash == text_sha256(p.problem)
        assert r"\boxed{" in p.solution, p.unique_id


def test_every_candidate_ends_with_its_answer_in_prm800k_format() -> None:
    seed()
    for solution in Solution.objects.all():
        *body, last = solution.steps
        assert solution.text_hash == text_sha256("\n".join(solution.steps))
        # One step per line; only the last step carries the "# Answer" trailer.
        assert all("\n" not in step and ANSWER_MARKER not in step for step in body)
        head, marker, answer = last.partition(f"\n\n{ANSWER_MARKER}\n\n")
        assert marker and head.strip(), last
        assert answer == solution.answer != ""
        assert answer_extract(solution.steps) == solution.answer  # as the grader reads it


def test_the_real_grader_agrees_with_the_demo_data_and_a_third_are_wrong() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", stdout=out, stderr=err)
    assert f"graded {demo_candidate_count()} candidates" in out.getvalue()
    assert err.getvalue() == ""  # no "grade differs" warnings
    intended = {
        text_sha256("\n".join(c.steps)): c.is_correct for p in DEMO_PROBLEMS for c in p.candidates
    }
    solutions = list(Solution.objects.all())
    for solution in solutions:
        expected = Grade.CORRECT if intended[solution.text_hash] else Grade.INCORRECT
        assert solution.grade == expected, (solution.problem_id, solution.answer)
    # Every distinct (problem, answer) pair went through the checker's cache once.
    assert GradedAnswer.objects.count() == len({(s.problem_id, s.answer) for s in solutions})
    grades = Counter(s.grade for s in solutions)
    assert grades[Grade.INCORRECT] * 3 >= len(solutions)
    assert grades[Grade.CORRECT] * 3 >= len(solutions)
    # A second run has nothing left to grade and so does not start the checker.
    assert "graded 0 candidates" in seed()


def test_without_grading_candidates_stay_ungraded() -> None:
    seed()
    assert set(Solution.objects.values_list("grade", flat=True)) == {Grade.UNGRADED}


def test_wrong_candidates_go_wrong_at_varied_known_steps() -> None:
    positions: Counter[int] = Counter()
    for problem in DEMO_PROBLEMS:
        assert any(c.is_correct for c in problem.candidates), problem.unique_id
        assert any(not c.is_correct for c in problem.candidates), problem.unique_id
        for cand in problem.candidates:
            if cand.error_step is not None:
                assert 0 <= cand.error_step < len(cand.steps)
                positions[cand.error_step] += 1
    assert len(positions) >= 4, positions  # first, second, third and fourth steps all occur


def test_demo_logins_work_and_carry_their_roles() -> None:
    output = seed()
    for username, password, _role in DEMO_LOGINS:
        assert password in output  # printed for whoever ran the command
        assert Client().login(request=HttpRequest(), username=username, password=password), username

    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff

    annotator = User.objects.get(username="annotator")
    assert list(annotator.groups.values_list("name", flat=True)) == ["annotators"]
    assert AnnotatorProfile.objects.get(user=annotator).screening_passed is True
    assert not annotator.is_staff

    mlstaff = User.objects.get(username="mlstaff")
    assert mlstaff.is_staff and not mlstaff.is_superuser
    assert list(mlstaff.groups.values_list("name", flat=True)) == ["ml-staff"]
    for perm in (
        "selector.view_selectorversion",
        "selector.change_selectorversion",
        "jobs.view_job",
        "jobs.change_job",
        "labeling.view_problem",
        "labeling.view_label",
    ):
        assert mlstaff.has_perm(perm), perm
    assert not mlstaff.has_perm("labeling.change_label")
    assert not mlstaff.has_perm("labeling.delete_problem")


def test_running_twice_creates_no_duplicates() -> None:
    seed()
    before = table_counts()
    output = seed()
    assert table_counts() == before
    assert "created 0 problems, 0 candidate solutions, 0 tasks, 0 users;" in output


def test_rerun_keeps_a_password_that_was_changed() -> None:
    seed()
    admin = User.objects.get(username="admin")
    admin.set_password("a-new-secret-password")
    admin.save(update_fields=["password"])
    seed()
    assert Client().login(request=HttpRequest(), username="admin", password="a-new-secret-password")


def test_rerun_restores_deleted_demo_rows() -> None:
    seed()
    Problem.objects.filter(unique_id="demo/geometry/1.json").delete()
    seed()
    assert Problem.objects.count() == len(DEMO_PROBLEMS)
    assert Solution.objects.count() == Task.objects.count() == demo_candidate_count()


def test_if_empty_does_nothing_when_problems_exist() -> None:
    ProblemFactory()
    output = seed("--if-empty")
    assert "nothing to do" in output
    assert table_counts() == (1, 0, 0, 0)


def test_if_empty_seeds_an_empty_database() -> None:
    seed("--if-empty")
    assert Problem.objects.count() == len(DEMO_PROBLEMS)
