"""Answer grading: math-verify equivalence, the hard time limit, and the (problem, answer) cache."""

import time

import pytest

from labeling.answers import answer_extract
from labeling.models import Grade, GradedAnswer, Solution
from labeling.services.grading import (
    AnswerChecker,
    answers_grade,
    problem_grades_reset,
)
from tests.factories import ProblemFactory, SolutionFactory

PATHOLOGICAL = r"2^{2^{2^{2^{2^{2}}}}}"  # a tower sympy would try to evaluate for ever


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(timeout=3) as shared:
        yield shared


def test_answer_is_the_text_after_the_marker_in_the_last_step():
    assert answer_extract(["Add.", "So it is 4.\n\n# Answer\n\n 4\\frac{2}{3} "]) == "4\\frac{2}{3}"
    assert answer_extract(["# Answer in step one", "no marker here"]) == ""
    assert answer_extract([]) == ""


@pytest.mark.parametrize(
    ("gold", "answer"),
    [
        (r"\frac{14}{3}", "14/3"),
        (r"\frac{14}{3}", r"4\frac{2}{3}"),
        ("14/3", r"4\frac{2}{3}"),
        (r"40,\!000", "40000"),
        (r"90^\circ", "90"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\pi/2)"),
    ],
)
def test_equivalent_forms_are_correct(checker, gold, answer):
    assert checker.check(gold, answer) == ("correct", "")


@pytest.mark.parametrize(
    ("gold", "answer"),
    [("(1,2]", "(1,2)"), ("28800", "7200"), (r"\frac{1}{2}", r"\frac{1}{9}")],
)
def test_different_answers_are_incorrect(checker, gold, answer):
    assert checker.check(gold, answer)[0] == "incorrect"


def test_missing_final_answer_is_incorrect(checker):
    assert checker.check("5", "") == ("incorrect", "no final answer")


def test_integer_literals_and_identical_text_need_no_symbolic_check():
    with AnswerChecker(timeout=1) as fresh:
        assert fresh.check("007", "7") == ("correct", "")
        assert fresh.check("-3", "3") == ("incorrect", "")
        assert fresh.check(r"\sqrt{2}", r"\sqrt{2}") == ("correct", "")
        assert fresh._children == []  # answered without starting a process


def test_pathological_answer_comes_back_ungradable_within_the_limit():
    with AnswerChecker(timeout=1) as fast:
        # Start a checker process first (identical answers need none): the limit is per answer.
        assert fast.check(r"\frac{1}{2}", "0.5") == ("correct", "")
        started = time.monotonic()
        grade, detail = fast.check("1", PATHOLOGICAL)
        elapsed = time.monotonic() - started
        assert (grade, detail) == ("ungradable", "timed out after 1s")
        assert elapsed < 3
        # The killed process was replaced: the checker keeps working.
        assert fast.check("2", "4/2") == ("correct", "")


@pytest.mark.django_db
def test_grading_sets_solution_grades_and_caches_each_distinct_answer_once(checker):
    problem = ProblemFactory(answer=r"\frac{14}{3}")
    right = [SolutionFactory(problem=problem, answer=a) for a in ("14/3", "14/3", r"4\frac{2}{3}")]
    wrong = SolutionFactory(problem=problem, answer="(1,2)")
    hang = SolutionFactory(problem=problem, answer=PATHOLOGICAL)

    calls_before = checker.calls
    report = answers_grade(checker=checker)

    assert checker.calls - calls_before == 4  # "14/3" twice is checked once
    assert report.pairs_checked == 4
    assert report.solutions_graded == 5
    grades = dict(Solution.objects.values_list("id", "grade"))
    assert [grades[s.id] for s in right] == [Grade.CORRECT] * 3
    assert grades[wrong.id] == Grade.INCORRECT
    assert grades[hang.id] == Grade.UNGRADABLE
    cached = GradedAnswer.objects.get(problem=problem, answer=PATHOLOGICAL)
    assert cached.detail.startswith("timed out")


@pytest.mark.django_db
def test_second_grading_of_a_known_pair_uses_the_cache_not_the_checker(checker):
    problem = ProblemFactory(answer="7")
    SolutionFactory(problem=problem, answer="7")
    answers_grade(checker=checker)
    later = SolutionFactory(problem=problem, answer="7.0")
    again = SolutionFactory(problem=problem, answer="7")

    calls_before = checker.calls
    report = answers_grade(checker=checker)

    assert checker.calls - calls_before == 1  # only the new "7.0"
    assert (report.pairs_checked, report.pairs_cached, report.solutions_graded) == (1, 1, 2)
    later.refresh_from_db()
    again.refresh_from_db()
    assert (later.grade, again.grade) == (Grade.CORRECT, Grade.CORRECT)
    assert GradedAnswer.objects.filter(problem=problem).count() == 2


@pytest.mark.django_db
def test_grading_can_be_limited_to_some_problems(checker):
    a = SolutionFactory(problem=ProblemFactory(answer="1"), answer="1")
    b = SolutionFactory(problem=ProblemFactory(answer="2"), answer="2")
    answers_grade(problem_ids=[a.problem_id], checker=checker)
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.grade, b.grade) == (Grade.CORRECT, Grade.UNGRADED)


@pytest.mark.django_db
def test_resetting_a_problem_forgets_its_cached_grades(checker):
    solution = SolutionFactory(problem=ProblemFactory(answer="1"), answer="1")
    answers_grade(checker=checker)
    assert problem_grades_reset(problem_ids=[solution.problem_id]) == 1
    solution.refresh_from_db()
    assert solution.grade == Grade.UNGRADED
    assert not GradedAnswer.objects.filter(problem_id=solution.problem_id).exists()
