"""The three import commands end to end: files, stdin, exact line errors, --skip-invalid."""

import io
import json
import sys

import pytest
from django.core.management import CommandError, call_command

from labeling.models import Grade, Label, Problem, Solution, Task
from tests.factories import ProblemFactory

pytestmark = pytest.mark.django_db


def write_jsonl(path, *lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(path)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, verbosity=0)
    return out.getvalue(), err.getvalue()


def math_problem(n, **overrides):
    record = {
        "problem": f"What is ${n}+{n}$?",
        "solution": f"It is $\\boxed{{{2 * n}}}$.",
        "answer": str(2 * n),
        "subject": "Algebra",
        "level": 2,
        "unique_id": f"test/algebra/{n}.json",
    }
    return record | overrides


def test_import_problems_creates_then_updates_without_duplicates(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", math_problem(1), math_problem(2))
    out, _ = run("import_problems", path)
    assert "created 2 problems" in out
    assert Problem.objects.count() == 2

    path = write_jsonl(tmp_path / "p.jsonl", math_problem(1), math_problem(2, level="Level 5"))
    out, _ = run("import_problems", path)
    assert "updated 1 problems" in out
    assert Problem.objects.count() == 2
    assert Problem.objects.get(unique_id="test/algebra/2.json").level == 5


def test_invalid_lines_are_all_reported_and_nothing_is_imported(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        math_problem(1),
        "{not json",
        math_problem(3, answer=None),
        "",
        math_problem(4, level="hard"),
        [1, 2],
    )
    with pytest.raises(CommandError, match=r"4 invalid line\(s\) .* nothing was imported") as exc:
        out, err = io.StringIO(), io.StringIO()
        call_command("import_problems", path, stdout=out, stderr=err, verbosity=0)
    assert err.getvalue().splitlines() == [
        f"{path}:2: line: invalid JSON: Expecting property name enclosed in double quotes "
        "at column 2",
        f"{path}:3: answer: must be a string, got null",
        f"{path}:5: level: must be an integer level like 3, got 'hard'",
        f"{path}:6: line: expected a JSON object",
    ]
    assert exc.value.args
    assert Problem.objects.count() == 0


def test_skip_invalid_imports_the_valid_lines_and_lists_the_rest(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", math_problem(1), math_problem(2, unique_id=""))
    out, err = run("import_problems", path, "--skip-invalid")
    assert err.splitlines() == [f"{path}:2: unique_id: must not be empty"]
    assert "1 invalid lines skipped" in out
    assert list(Problem.objects.values_list("unique_id", flat=True)) == ["test/algebra/1.json"]


def test_import_reads_stdin(monkeypatch):
    data = json.dumps(math_problem(7)) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    out, _ = run("import_problems", "-")
    assert out.startswith("<stdin>: 1 of 1 lines valid")
    assert Problem.objects.get().unique_id == "test/algebra/7.json"


def test_import_candidates_dedupes_grades_and_reports_unknown_problems(tmp_path):
    ProblemFactory(unique_id="p/1", problem="What is 14/3?", answer=r"\frac{14}{3}")
    lines = [
        {"unique_id": "p/1", "steps": ["Divide.", "# Answer\n\n4\\frac{2}{3}"], "generator": "g1"},
        {"unique_id": "p/1", "solution": "Divide.\n\n# Answer\n\n4\\frac{2}{3}\n"},  # a dup
        {"problem": "What is 14/3?", "solution": "Guess.\n# Answer\n(1,2)", "answer": "(1,2)"},
        {"unique_id": "p/404", "steps": ["x"]},
        {"unique_id": "p/1", "steps": []},
        {"unique_id": "p/1", "steps": ["a"], "solution": "a"},
    ]
    path = write_jsonl(tmp_path / "c.jsonl", *lines)
    with pytest.raises(CommandError):
        run("import_candidates", path)
    assert Solution.objects.count() == 0

    out, err = run("import_candidates", path, "--skip-invalid")
    assert err.splitlines() == [
        f"{path}:4: unique_id: no problem with unique_id 'p/404'",
        f"{path}:5: steps: must be a non-empty list of strings",
        f"{path}:6: steps: give either 'steps' or 'solution', not both",
    ]
    assert "created 2 solutions" in out
    assert "graded 2 solutions" in out
    by_answer = {s.answer: s for s in Solution.objects.all()}
    assert by_answer["4\\frac{2}{3}"].steps == ["Divide.", "# Answer\n\n4\\frac{2}{3}"]
    assert by_answer["4\\frac{2}{3}"].grade == Grade.CORRECT
    assert by_answer["4\\frac{2}{3}"].generator == "g1"
    assert by_answer["(1,2)"].steps == ["Guess.", "# Answer\n\n(1,2)"]
    assert by_answer["(1,2)"].grade == Grade.INCORRECT

    out, _ = run("import_candidates", path, "--skip-invalid")
    assert "created nothing" in out
    assert Solution.objects.count() == 2


def test_no_grade_leaves_candidates_ungraded(tmp_path):
    ProblemFactory(unique_id="p/1", answer="3")
    path = write_jsonl(tmp_path / "c.jsonl", {"unique_id": "p/1", "steps": ["# Answer\n\n3"]})
    out, _ = run("import_candidates", path, "--no-grade")
    assert "graded" not in out
    assert Solution.objects.get().grade == Grade.UNGRADED


def test_batches_smaller_than_the_file_give_the_same_result(tmp_path):
    ProblemFactory(unique_id="p/1", answer="3")
    lines = [
        {"unique_id": "p/1", "steps": [f"Try {i}.", f"# Answer\n\n{i % 4}"]} for i in range(25)
    ]
    lines.append(lines[0])
    path = write_jsonl(tmp_path / "c.jsonl", *lines)
    out, _ = run("import_candidates", path, "--batch-size", "4")
    assert "created 25 solutions" in out
    assert Solution.objects.filter(grade=Grade.CORRECT).count() == 6  # i % 4 == 3


def test_import_prm800k_end_to_end_and_idempotent(shared_data):
    path = str(shared_data / "prm800k_phase2_sample.jsonl")
    out, _ = run("import_prm800k", path)
    assert "created 4 problems, 9 solutions, 9 tasks, 9 labels" in out
    assert "graded 9 solutions" in out
    assert Solution.objects.filter(grade=Grade.UNGRADED).count() == 0

    out, _ = run("import_prm800k", path)
    assert "created nothing" in out
    assert (Label.objects.count(), Task.objects.count()) == (9, 9)


def test_import_prm800k_reports_bad_records(tmp_path, shared_data):
    record = json.loads((shared_data / "prm800k_phase2_sample.jsonl").open().readline())
    bad_labeler = record | {"labeler": "nobody"}
    bad_step = json.loads(json.dumps(record))
    bad_step["label"]["steps"][2]["chosen_completion"] = 3
    bad_reason = json.loads(json.dumps(record))
    bad_reason["label"]["finish_reason"] = "tired"
    path = write_jsonl(tmp_path / "r.jsonl", bad_labeler, bad_step, bad_reason)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_prm800k", path, stdout=out, stderr=err, verbosity=0)
    assert err.getvalue().splitlines() == [
        f"{path}:1: labeler: 'nobody' is not a UUID",
        f"{path}:2: label.steps[2].chosen_completion: must be null or an index into "
        "1 completions, got 3",
        f"{path}:3: label.finish_reason: must be one of found_error, solution, bad_problem, "
        "give_up, got 'tired'",
    ]
    assert Label.objects.count() == Problem.objects.count() == 0


def test_errors_in_later_batches_are_still_found_after_the_first(tmp_path):
    ProblemFactory(unique_id="p/1", answer="3")
    ok = {"unique_id": "p/1", "steps": ["# Answer\n\n3"]}
    path = write_jsonl(
        tmp_path / "c.jsonl",
        {"unique_id": "p/1"},
        ok,
        ok | {"steps": ["x", "# Answer\n\n4"]},
        ok | {"steps": ["y", "# Answer\n\n5"]},
        {"unique_id": "p/2", "steps": ["z"]},
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=r"2 invalid line\(s\)"):
        call_command(
            "import_candidates", path, "--batch-size", "2", stdout=out, stderr=err, verbosity=0
        )
    assert err.getvalue().splitlines() == [
        f"{path}:1: steps: is required (or give the solution text as 'solution')",
        f"{path}:5: unique_id: no problem with unique_id 'p/2'",
    ]
    assert not Solution.objects.exists()
