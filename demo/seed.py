"""Loading the demo into a database: its problems, candidates, a ready queue and the logins.

``manage.py seed_demo`` is its command-line face; ``make run`` prints ``DEMO_LOGINS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group, User
from django.db import transaction

from demo.logins import DEMO_LOGINS
from demo.problems import DEMO_PROBLEMS, demo_candidate_count
from labeling.models import (
    AnnotatorProfile,
    Grade,
    Problem,
    Solution,
    Task,
    TaskKind,
    text_sha256,
)
from labeling.services.grading import answers_grade
from selector.services.versions import selector_permissions_grant

ANNOTATORS_GROUP = "annotators"
DEMO_SOURCE = "demo"
DEMO_GENERATOR = "demo-writer"
DEMO_GENERATION = 0


@dataclass(frozen=True)
class DemoSeedResult:
    problems_created: int = 0
    solutions_created: int = 0
    tasks_created: int = 0
    users_created: int = 0
    solutions_graded: int = 0
    # Candidates whose checker grade differs from what the demo data intends (should be none).
    grade_mismatches: tuple[str, ...] = ()
    skipped: bool = False  # --if-empty found existing problems


def demo_seed(*, if_empty: bool = False, grade: bool = True) -> DemoSeedResult:
    """Load the demo problems, candidates, queue and logins; safe to run any number of times.

    Rows are matched by their natural keys (problem unique_id, solution text hash, task
    round, username), so a second run creates nothing and never touches labels or passwords
    someone has changed since. Candidates are graded by the real answer checker (after the
    rows are committed: math-verify must not run inside a write transaction), and its verdicts
    are compared with the right/wrong the demo data intends.
    """
    if if_empty and Problem.objects.exists():
        return DemoSeedResult(skipped=True)
    counts = _demo_rows_ensure()
    graded, mismatches = _demo_grade() if grade else (0, ())
    return DemoSeedResult(
        problems_created=counts["problems_created"],
        solutions_created=counts["solutions_created"],
        tasks_created=counts["tasks_created"],
        users_created=counts["users_created"],
        solutions_graded=graded,
        grade_mismatches=mismatches,
    )


@transaction.atomic
def _demo_rows_ensure() -> dict[str, int]:
    counts = {
        "problems_created": 0,
        "solutions_created": 0,
        "tasks_created": 0,
        "users_created": _demo_users_ensure(),
    }
    n_problems = len(DEMO_PROBLEMS)
    total = demo_candidate_count()
    for p_index, demo in enumerate(DEMO_PROBLEMS):
        problem, created = Problem.objects.get_or_create(
            unique_id=demo.unique_id,
            defaults={
                "problem": demo.problem,
                "problem_hash": text_sha256(demo.problem),
                "solution": demo.solution,
                "answer": demo.answer,
                "subject": demo.subject,
                "level": demo.level,
            },
        )
        counts["problems_created"] += created
        for c_index, cand in enumerate(demo.candidates):
            solution, created = Solution.objects.get_or_create(
                problem=problem,
                text_hash=text_sha256("\n".join(cand.steps)),
                defaults={
                    "steps": list(cand.steps),
                    "answer": cand.answer,
                    "generator": DEMO_GENERATOR,
                    "source": DEMO_SOURCE,
                },
            )
            counts["solutions_created"] += created
            # Round-robin over problems (every problem's first candidate, then every second
            # one...) so the first tasks an annotator sees cover all subjects.
            rank = c_index * n_problems + p_index
            _, created = Task.objects.get_or_create(
                solution=solution,
                kind=TaskKind.NORMAL,
                generation=DEMO_GENERATION,
                defaults={"priority": float(total - rank), "required_labels": 1},
            )
            counts["tasks_created"] += created
    return counts


def _demo_grade() -> tuple[int, tuple[str, ...]]:
    intended = {
        (demo.unique_id, text_sha256("\n".join(cand.steps))): cand.is_correct
        for demo in DEMO_PROBLEMS
        for cand in demo.candidates
    }
    problem_ids = list(
        Problem.objects.filter(unique_id__in=[d.unique_id for d in DEMO_PROBLEMS]).values_list(
            "id", flat=True
        )
    )
    graded = 0
    # Starting the checker processes costs seconds: only when something is left to grade.
    if Solution.objects.filter(problem_id__in=problem_ids, grade=Grade.UNGRADED).exists():
        graded = answers_grade(problem_ids=problem_ids).solutions_graded
    mismatches = []
    rows = Solution.objects.filter(problem_id__in=problem_ids).values_list(
        "problem__unique_id", "text_hash", "answer", "grade"
    )
    for unique_id, text_hash, answer, actual in rows:
        correct = intended.get((unique_id, text_hash))
        if correct is None or actual == Grade.UNGRADED:
            continue  # not demo text (edited or added since), or left for the grading task
        expected = Grade.CORRECT if correct else Grade.INCORRECT
        if actual != expected:
            mismatches.append(f"{unique_id}: answer {answer!r} graded {actual}, meant {expected}")
    return graded, tuple(mismatches)


def _demo_users_ensure() -> int:
    annotators, _ = Group.objects.get_or_create(name=ANNOTATORS_GROUP)
    ml_staff = selector_permissions_grant()
    passwords = {username: password for username, password, _ in DEMO_LOGINS}

    _, admin_created = _user_ensure("admin", passwords["admin"], staff=True, superuser=True)
    annotator, annotator_created = _user_ensure("annotator", passwords["annotator"])
    annotator.groups.add(annotators)
    AnnotatorProfile.objects.get_or_create(user=annotator, defaults={"screening_passed": True})
    mlstaff, mlstaff_created = _user_ensure("mlstaff", passwords["mlstaff"], staff=True)
    mlstaff.groups.add(ml_staff)
    return int(admin_created) + int(annotator_created) + int(mlstaff_created)


def _user_ensure(
    username: str, password: str, *, staff: bool = False, superuser: bool = False
) -> tuple[User, bool]:
    # The password is set only when the account is new: re-seeding never undoes a change.
    user, created = User.objects.get_or_create(
        username=username, defaults={"is_staff": staff, "is_superuser": superuser}
    )
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    return user, created
