"""Training data: every rated branch becomes an example; label hygiene; what a version saw."""

import hashlib
from pathlib import Path
from typing import Any

import pytest

from labeling.models import AnnotatorProfile
from selector.services import (
    LabelHygiene,
    labeled_trajectories,
    training_data_build,
    training_data_stream,
    trajectories_split,
)
from selector.services.training import validation_split
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, annotator
from tests.labeling.prm800k_records import load_shared_samples

pytestmark = pytest.mark.django_db


def _step(text: str, rating: int | None, flagged: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "completions": [
            {"text": text, "rating": rating, "flagged": flagged},
            *extra.get("alts", []),
        ],
        "human_completion": None,
        "chosen_completion": extra.get("chosen", 0),
    }


def build(**hygiene: bool) -> Any:
    rules = LabelHygiene(**hygiene)
    # Training streams its examples a task at a time: the same examples, in the same order,
    # as building them from the list of the split's training labels (every test checks it).
    train, _ = trajectories_split()
    streamed, problems, _ = training_data_stream(hygiene=rules)
    assert streamed == training_data_build(items=train, hygiene=rules)
    assert problems == len({t.problem_key for t in train})
    # With a held-in validation slice: the fit is validation_split's, the slice comes back.
    fit, validation = validation_split(train, 0.3)
    streamed, problems, held_in = training_data_stream(hygiene=rules, held_in_fraction=0.3)
    assert streamed == training_data_build(items=fit, hygiene=rules)
    assert sorted(t.label_id for t in held_in) == sorted(t.label_id for t in validation)
    return training_data_build(items=list(labeled_trajectories()), hygiene=rules)


def test_streamed_examples_keep_the_order_of_each_tasks_first_label(settings) -> None:
    settings.SELECTOR_EVAL_FRACTION = 0.0
    first, second = (TaskFactory(solution=SolutionFactory(steps=[t])) for t in ("p", "q"))
    # Labels interleaved across the two tasks: a stream by task still gives p's example first.
    for task, rating in [(second, 1), (first, -1), (second, 1), (first, -1), (second, 0)]:
        LabelFactory(task=task, steps=[_step(task.solution.steps[0], rating)])
    data = build()
    assert [(steps, ratings) for _, steps, ratings in data.examples] == [
        (["q"], [1]),
        (["p"], [-1]),
    ]
    streamed, _, _ = training_data_stream(hygiene=LabelHygiene())
    assert streamed.examples == data.examples


def test_examples_hold_every_negative_of_the_real_samples(
    shared_data: Path, tmp_path: Path
) -> None:
    """Done-when of issue 8, on the selector's side: the branches the TRL export writes are
    the ones training sees (>= 95% of the distinct -1-rated completions, each a -1 target)."""
    wanted = load_shared_samples(shared_data, tmp_path)
    data = build()
    targets = {
        (problem, k, text)
        for problem, steps, ratings in data.examples
        for k, (text, rating) in enumerate(zip(steps, ratings, strict=True))
        if rating == -1
    }
    assert len(wanted & targets) / len(wanted) >= 0.95, (len(wanted & targets), len(wanted))
    assert data.summary["branch_examples"] > data.summary["trajectory_examples"]
    # A branch's prefix is context: only its last step is a target.
    for _, _, ratings in data.examples[data.summary["trajectory_examples"] :]:
        assert all(r is None for r in ratings[:-1]) and ratings[-1] is not None


def test_unreliable_annotators_are_left_out_and_counted() -> None:
    paused, failed, fine = annotator(), annotator(), annotator()
    AnnotatorProfile.objects.filter(user=paused).update(is_paused=True)
    AnnotatorProfile.objects.filter(user=failed).update(screening_passed=False)
    labels = {}
    for user in (paused, failed, fine):
        labels[user.pk] = LabelFactory(
            annotator=user,
            labeler=user.annotator_profile.labeler,
            steps=[_step("a", 1), _step("b", -1)],
            finish_reason="found_error",
        )
    data = build()
    assert data.summary["label_hygiene"]["excluded_unreliable_labels"] == 2
    assert data.label_ids == [labels[fine.pk].pk]
    assert len(build(exclude_unreliable=False).label_ids) == 3


def test_overlapping_labels_combine_by_majority_and_ties_are_listed() -> None:
    task = TaskFactory(solution=SolutionFactory(steps=["a", "b", "c"]))
    for second, third in [(-1, 1), (-1, 0), (1, -1)]:
        LabelFactory(task=task, steps=[_step("a", 1), _step("b", second), _step("c", third)])
    other = TaskFactory(solution=SolutionFactory(steps=["x", "y"]))
    for rating in (1, -1):
        LabelFactory(task=other, steps=[_step("x", 0), _step("y", rating)])
    data = build()
    trajectories = {tuple(s): r for _, s, r in data.examples}
    # Step b: two of three say -1, so -1; step c is past the combined first negative.
    assert trajectories[("a", "b", "c")][:2] == [1, -1]
    assert trajectories[("x", "y")] == [0, None]  # a tie on y: no target
    hygiene = data.summary["label_hygiene"]
    assert hygiene["combined_tasks"] == 2 and hygiene["ties"] == 1
    assert hygiene["tie_list"] == [{"task_id": other.pk, "step": 1, "votes": [1, -1]}]
    # Without combining, each label is its own example.
    assert build(combine_overlaps=False).summary["trajectory_examples"] == 5


def test_flagged_steps_are_context_unless_included() -> None:
    alt = {"text": "b-alt", "rating": -1, "flagged": True}
    LabelFactory(steps=[_step("a", 1), _step("b", 1, flagged=True, alts=[alt])])
    [(_, steps, ratings)] = build().examples
    assert (steps, ratings) == (["a", "b"], [1, None])
    data = build(include_flagged=True)
    assert [r for _, _, r in data.examples] == [[1, 1], [None, -1]]


def test_a_version_records_how_many_labels_and_which() -> None:
    labels = [LabelFactory(steps=[_step("a", 1)]) for _ in range(3)]
    ids = sorted(label.pk for label in labels)
    summary = build().summary["trained_on_labels"]
    assert summary == {
        "count": 3,
        "sha256": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest(),
    }


def test_a_label_whose_first_step_is_wrong_keeps_its_rated_branches() -> None:
    """Phase 1: every alternative of the first step rated -1 and no step written, so the
    chosen trajectory is empty; its rated completions are still examples, as in the export."""
    from labeling.services.export import stepwise_rows

    steps = [
        {
            "completions": [
                {"text": "a", "rating": -1, "flagged": False},
                {"text": "b", "rating": -1, "flagged": False},
                {"text": "c", "rating": None, "flagged": False},
            ],
            "human_completion": None,
            "chosen_completion": None,
        }
    ]
    label = LabelFactory(
        task=TaskFactory(solution=SolutionFactory(steps=["x"])),
        steps=steps,
        finish_reason="found_error",
    )
    data = build()
    assert sorted((s, r) for _, s, r in data.examples) == [(["a"], [-1]), (["b"], [-1])]
    assert data.label_ids == [label.pk]
    exported = stepwise_rows(problem="p", steps=steps, own_steps=["x"])
    assert sorted((r["completions"], r["labels"]) for r in exported) == [
        (["a"], [False]),
        (["b"], [False]),
    ]


def test_a_step_the_labeler_wrote_is_a_positive_example_unless_left_out() -> None:
    """A correction at a phase-2 error (Stepwise's own shape: corrected_rating null) is one
    example rated +1 after the prefix; a phase-1 step the labeler wrote and went on with is a
    +1 target. ``exclude_human_completions`` makes both context, as before."""
    from labeling.services.labels import label_steps_build

    phase2 = label_steps_build(
        steps=["a", "b"], ratings=[1, -1], flags=[False, False], human_completion="b-fix"
    )
    LabelFactory(
        task=TaskFactory(solution=SolutionFactory(steps=["a", "b", "c"])),
        steps=phase2,
        finish_reason="found_error",
    )
    human = {"text": "y", "rating": None, "source": "human", "flagged": False}
    phase1 = [
        _step("x", 1),
        {"completions": [{"text": "y-bad", "rating": -1, "flagged": False}],
         "human_completion": human, "chosen_completion": None},
        _step("z", 1),
    ]  # fmt: skip
    LabelFactory(
        task=TaskFactory(solution=SolutionFactory(steps=["q"])),
        steps=phase1,
        finish_reason="solution",
    )
    examples = sorted((s, r) for _, s, r in build().examples)
    assert examples == [
        (["a", "b"], [1, -1]),
        (["a", "b-fix"], [None, 1]),
        (["x", "y", "z"], [1, 1, 1]),
        (["x", "y-bad"], [None, -1]),
    ]
    data = build(exclude_human_completions=True)
    assert sorted((s, r) for _, s, r in data.examples) == [
        (["a", "b"], [1, -1]),
        (["x", "y", "z"], [1, None, 1]),
        (["x", "y-bad"], [None, -1]),
    ]
    assert data.summary["label_hygiene"]["human_steps"] == 2
    assert data.summary["label_hygiene"]["exclude_human_completions"] is True


def test_train_selector_passes_exclude_human_completions_to_the_job(selector_settings) -> None:
    from django.core.management import call_command

    from jobs.models import Job
    from labeling.services.labels import label_steps_build
    from selector.models import SelectorVersion

    selector_settings.SELECTOR_EVAL_FRACTION = 0
    steps = label_steps_build(
        steps=["a", "b"], ratings=[1, -1], flags=[False, False], human_completion="b-fix"
    )
    LabelFactory(
        task=TaskFactory(solution=SolutionFactory(steps=["a", "b"])),
        steps=steps,
        finish_reason="found_error",
    )
    call_command(
        "train_selector", "--exclude-human-completions", "--epochs", "1", "--sync", verbosity=0
    )
    assert Job.objects.get().params["exclude_human_completions"] is True
    summary = SelectorVersion.objects.get().training_summary
    assert summary["label_hygiene"]["exclude_human_completions"] is True
    assert summary["branch_examples"] == 0  # the correction is left out
