"""Grading through a real Celery worker process."""

import pytest

from labeling.models import Grade, GradedAnswer, Solution
from labeling.tasks import grade_solutions
from tests.factories import ProblemFactory, SolutionFactory


@pytest.mark.worker
@pytest.mark.slow
def test_grade_solutions_task_runs_on_a_real_worker(celery_worker_process, wait_until):
    problem = ProblemFactory(answer=r"\frac{14}{3}")
    right = SolutionFactory(problem=problem, answer=r"4\frac{2}{3}")
    wrong = SolutionFactory(problem=problem, answer="(1,2]")
    other = SolutionFactory(problem=ProblemFactory(answer="1"), answer="1")

    grade_solutions.delay(problem_ids=[problem.id])

    def graded() -> bool:
        return not Solution.objects.filter(problem=problem, grade=Grade.UNGRADED).exists()

    wait_until(graded, timeout=90, message="the worker to grade the solutions")
    assert Solution.objects.get(pk=right.pk).grade == Grade.CORRECT
    assert Solution.objects.get(pk=wrong.pk).grade == Grade.INCORRECT
    assert Solution.objects.get(pk=other.pk).grade == Grade.UNGRADED  # not asked for
    assert GradedAnswer.objects.filter(problem=problem).count() == 2
