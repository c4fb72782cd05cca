"""export_prm800k / export_stepwise commands: files, stdout, filters, errors, round trip."""

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labeling.models import TaskKind
from tests.factories import LabelFactory, TaskFactory
from tests.labeling.prm800k_records import (
    STEPWISE_OPTIONS,
    row_completions,
    stepwise_option_labels,
)

pytestmark = pytest.mark.django_db


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_prm800k_to_a_file_with_filters(tmp_path: Path) -> None:
    LabelFactory(task=TaskFactory(generation=1))
    LabelFactory(task=TaskFactory(generation=2))
    LabelFactory(task=TaskFactory(generation=2, kind=TaskKind.QUALITY_CONTROL))
    out = tmp_path / "out.jsonl"
    call_command("export_prm800k", "-o", str(out), "--generation", "2")
    assert [r["generation"] for r in read_jsonl(out)] == [2]
    call_command("export_prm800k", "-o", str(out), "--generation", "2", "--include-qc")
    assert [r["is_quality_control_question"] for r in read_jsonl(out)] == [False, True]
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_export_prm800k_to_stdout(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    label = LabelFactory()
    call_command("export_prm800k")
    captured = capfdbinary.readouterr()
    [record] = [json.loads(line) for line in captured.out.decode().splitlines()]
    assert record["labeler"] == str(label.labeler)
    assert b"exported 1 labeled solutions" in captured.err


def test_export_since_filter_and_bad_since(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    LabelFactory(created_at=datetime(2023, 1, 1, tzinfo=UTC))
    LabelFactory(created_at=datetime(2024, 1, 1, tzinfo=UTC))
    out = tmp_path / "out.jsonl"
    call_command("export_prm800k", "-o", str(out), "--since", "2023-06-01")
    assert [r["timestamp"][:4] for r in read_jsonl(out)] == ["2024"]
    with pytest.raises(CommandError, match="since: 'june'"):
        call_command("export_prm800k", "-o", str(out), "--since", "june")


def test_missing_output_directory_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "out.jsonl"
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_prm800k", "-o", str(target))
    assert not target.parent.exists()


def test_export_stepwise_neutral_option(tmp_path: Path) -> None:
    steps = [
        {"completions": [{"text": t, "rating": r, "flagged": None}],
         "human_completion": None, "chosen_completion": 0}
        for t, r in [("a", 1), ("b", 0), ("c", -1)]
    ]  # fmt: skip
    LabelFactory(steps=steps, finish_reason="found_error")
    out = tmp_path / "trl.jsonl"
    call_command("export_stepwise", "-o", str(out))
    [record] = read_jsonl(out)
    assert record["completions"] == ["a", "b", "c"]
    assert record["labels"] == [True, True, False]
    call_command("export_stepwise", "-o", str(out), "--neutral", "negative")
    assert read_jsonl(out)[0]["labels"] == [True, False, False]
    with pytest.raises(CommandError):
        call_command("export_stepwise", "-o", str(out), "--neutral", "maybe")


@pytest.mark.parametrize("name", ["prm800k_phase1_sample.jsonl", "prm800k_phase2_sample.jsonl"])
def test_import_then_export_commands_reproduce_real_records(
    shared_data: Path, tmp_path: Path, name: str
) -> None:
    source = shared_data / name
    call_command("import_prm800k", str(source), "--no-grade", verbosity=0)
    out = tmp_path / "out.jsonl"
    call_command("export_prm800k", "-o", str(out), "--include-qc", "--include-screening")
    assert read_jsonl(out) == read_jsonl(source)


def test_export_stepwise_writes_a_row_per_branch_unless_trajectories_only(tmp_path: Path) -> None:
    alternatives = [{"text": "b-alt", "rating": -1, "flagged": False}]
    steps = [
        {"completions": [{"text": "a", "rating": 1, "flagged": None}],
         "human_completion": None, "chosen_completion": 0},
        {"completions": [{"text": "b", "rating": 1, "flagged": None}, *alternatives],
         "human_completion": None, "chosen_completion": 0},
    ]  # fmt: skip
    LabelFactory(steps=steps, finish_reason="solution")
    out = tmp_path / "trl.jsonl"
    call_command("export_stepwise", "-o", str(out))
    assert [(r["completions"], r["labels"]) for r in read_jsonl(out)] == [
        (["a", "b"], [True, True]),
        (["a", "b-alt"], [True, False]),
    ]
    call_command("export_stepwise", "-o", str(out), "--trajectories-only")
    assert [r["completions"] for r in read_jsonl(out)] == [["a", "b"]]


@pytest.mark.parametrize("option", STEPWISE_OPTIONS)
def test_export_stepwise_each_option_changes_the_rows(tmp_path: Path, option: str) -> None:
    """The same labels and outcomes as the API's and the admin's tests of these options."""
    expected = stepwise_option_labels()
    out = tmp_path / "trl.jsonl"
    flags = ["--" + option.replace("_", "-")] if option else []
    call_command("export_stepwise", "-o", str(out), *flags)
    assert row_completions(read_jsonl(out)) == expected[option]
