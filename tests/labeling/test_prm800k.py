"""The PRM800K step reader: every real shape, the chosen trajectory, rated branches, examples."""

import json
from pathlib import Path
from typing import Any

import pytest

from labeling.prm800k import (
    chosen_trajectory,
    label_steps_check,
    rated_branches,
    ratings_combine,
    step_ratings,
    training_examples,
)
from labeling.services.jsonl import LineInvalid
from tests.labeling.prm800k_records import shape_records

SHAPES = shape_records()


def read(name: str) -> tuple[list[dict[str, Any]], list[str] | None]:
    record = SHAPES[name]
    return record["label"]["steps"], record["question"].get("pre_generated_steps")


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_of_the_release_is_valid(name: str) -> None:
    steps, own = read(name)
    assert label_steps_check(steps) is steps
    # One rating per label step whatever the shape.
    assert len(step_ratings(steps, own_steps=own)) == len(steps)


def test_phase1_alternatives_all_negative_then_the_labelers_own_step() -> None:
    steps, own = read("phase1_all_negative_then_human")
    trajectory = chosen_trajectory(steps, own_steps=own)
    assert [(s.text, s.rating, s.source) for s in trajectory] == [
        ("Add 3 and 4.", 1, "model"),
        ("3 + 4 = 7", None, "human"),  # context: no corrected_rating
        ("# Answer\n\n7", 1, "model"),
    ]
    branches = list(rated_branches(steps, own_steps=own))
    assert [(b.step, b.prefix, b.text, b.rating) for b in branches] == [
        (1, ("Add 3 and 4.",), "3 + 4 = 8", -1),
        (1, ("Add 3 and 4.",), "3 + 4 = 6", -1),
        (1, ("Add 3 and 4.",), "3 + 4 = 9", -1),
        (2, ("Add 3 and 4.", "3 + 4 = 7"), "# Answer\n\n8", -1),
    ]
    assert {b.source for b in branches} == {"model"}


def test_error_step_keeps_its_negative_beside_a_corrected_step() -> None:
    # The old importer let the human text replace the rated step and dropped the -1.
    steps, own = read("phase2_error_with_human_completion")
    assert step_ratings(steps, own_steps=own) == [1, -1]
    trajectory = chosen_trajectory(steps, own_steps=own)
    assert [s.text for s in trajectory] == own[:2]
    # The other alternative is a branch; the human step, unrated, is not.
    assert [(b.text, b.rating) for b in rated_branches(steps, own_steps=own)] == [
        ("So 3 + 4 = 9.", -1)
    ]


def test_a_correction_at_the_error_step_is_a_branch_when_given_a_default_rating() -> None:
    steps, own = read("phase2_error_with_human_completion")
    branches = list(rated_branches(steps, own_steps=own, human_default=1))
    assert [(b.text, b.rating, b.source) for b in branches][-1] == (
        steps[1]["human_completion"]["text"],
        1,
        "human",
    )
    assert branches[-1].prefix == tuple(own[:1]) and not branches[-1].after_error


def test_corrected_rating_makes_a_human_step_rated_and_a_branch() -> None:
    steps, own = read("phase1_corrected_rating")
    trajectory = chosen_trajectory(steps, own_steps=own)
    assert [(s.source, s.rating) for s in trajectory] == [("human", 1), ("human", None)]
    # A corrected human step off the trajectory is a branch of its own, source human.
    steps2 = json.loads(json.dumps(steps))
    steps2[0]["chosen_completion"] = 0
    steps2[0]["completions"][0]["rating"] = 0
    human = [b for b in rated_branches(steps2) if b.source == "human"]
    assert [(b.step, b.text, b.rating) for b in human] == [(0, "It is 7.", 1)]


def test_give_up_trajectory_stops_at_the_null_step() -> None:
    steps, _ = read("phase1_give_up_completions_null")
    assert [s.text for s in chosen_trajectory(steps)] == ["Start."]
    assert [(b.step, b.text) for b in rated_branches(steps)] == [(0, "Begin with 3.")]
    steps, _ = read("phase1_give_up_unrated_last_step")
    assert [s.text for s in chosen_trajectory(steps)] == ["Start."]
    assert list(rated_branches(steps)) == []  # shown, never rated


def test_phase2_error_step_own_completion_is_on_the_trajectory() -> None:
    steps, own = read("phase2_found_error")
    assert [(s.text, s.rating) for s in chosen_trajectory(steps, own_steps=own)] == [
        (own[0], 1),
        (own[1], -1),
    ]
    assert [(b.prefix, b.text, b.rating) for b in rated_branches(steps, own_steps=own)] == [
        ((own[0],), "So $3 + 4 = 7$.", 1),
        ((own[0],), "So 12.", -1),
    ]


def test_missing_keys_read_as_null() -> None:
    steps, _ = read("phase1_missing_keys")
    assert [(s.text, s.rating, s.flagged) for s in chosen_trajectory(steps)] == [
        ("Add.", 1, False),
        ("7.", 1, False),
    ]


def test_examples_count_prefix_labels_once_and_drop_flagged_and_after_error() -> None:
    steps, own = read("phase1_all_negative_then_human")
    examples = training_examples(steps, own_steps=own)
    # The step the labeler wrote is a positive target (PRM800K's "their own +1 step").
    assert [(e.steps, e.ratings) for e in examples] == [
        (["Add 3 and 4.", "3 + 4 = 7", "# Answer\n\n7"], [1, 1, 1]),
        (["Add 3 and 4.", "3 + 4 = 8"], [None, -1]),
        (["Add 3 and 4.", "3 + 4 = 6"], [None, -1]),
        (["Add 3 and 4.", "3 + 4 = 9"], [None, -1]),
        (["Add 3 and 4.", "3 + 4 = 7", "# Answer\n\n8"], [None, None, -1]),
    ]
    left_out = training_examples(steps, own_steps=own, human_default=None)
    assert left_out[0].ratings == [1, None, 1]
    # A flagged alternative is no target unless asked for.
    steps, _ = read("phase1_nulls_and_flags")
    assert len(training_examples(steps)) == 1
    assert [e.ratings for e in training_examples(steps, include_flagged=True)][1] == [-1]
    # After a chosen negative step nothing is a target: its later alternatives are dropped.
    after = [
        {"completions": [{"text": "bad", "rating": -1, "flagged": False}], "chosen_completion": 0},
        {"completions": [{"text": "x", "rating": 1}, {"text": "y", "rating": -1}]},
    ]
    assert [b.after_error for b in rated_branches(after)] == [True, True]
    assert [e.steps for e in training_examples(after)] == [["bad"]]


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ({"steps": []}, "label.steps"),
        (["step"], "label.steps[0]"),
        ([{"completions": "text"}], "label.steps[0].completions"),
        ([{"completions": ["text"]}], "label.steps[0].completions[0]"),
        ([{"completions": [{"rating": 1}]}], "label.steps[0].completions[0].text"),
        ([{"completions": [{"text": "a", "rating": 2}]}], "label.steps[0].completions[0].rating"),
        (
            [{"completions": [{"text": "a", "rating": True}]}],
            "label.steps[0].completions[0].rating",
        ),
        (
            [{"completions": [{"text": "a", "flagged": "yes"}]}],
            "label.steps[0].completions[0].flagged",
        ),
        ([{"completions": [{"text": "a", "score": 1}]}], "label.steps[0].completions[0].score"),
        ([{"completions": None, "chosen_completion": 0}], "label.steps[0].chosen_completion"),
        (
            [{"completions": [{"text": "a"}], "chosen_completion": 1}],
            "label.steps[0].chosen_completion",
        ),
        ([{"completions": [], "human_completion": "me"}], "label.steps[0].human_completion"),
        (
            [{"completions": [], "human_completion": {"rating": None}}],
            "label.steps[0].human_completion.text",
        ),
        (
            [{"completions": [], "human_completion": {"text": "me", "corrected_rating": 3}}],
            "label.steps[0].human_completion.corrected_rating",
        ),
        ([{"completions": [], "notes": "?"}], "label.steps[0].notes"),
    ],
)
def test_what_is_not_prm800k_is_refused_naming_the_field(steps: Any, field: str) -> None:
    with pytest.raises(LineInvalid) as excinfo:
        label_steps_check(steps)
    assert excinfo.value.field == field


@pytest.mark.parametrize(
    ("votes", "combined"),
    [
        ([-1], -1),
        ([1], 1),
        ([0], 0),
        ([-1, -1, 1], -1),
        ([-1, 1], None),  # a tie: listed by the caller, no target
        ([-1, 1, 1], 1),
        ([-1, 0, 1], 0),
        ([0, 1, 1], 1),
        ([0, 1], 0),
    ],
)
def test_overlapping_ratings_combine_by_majority(votes: list[int], combined: int | None) -> None:
    assert ratings_combine(votes) == combined


def negative_completions(record: dict[str, Any]) -> set[tuple[int, str]]:
    """Distinct (step, text) of completions rated -1, straight from the source record."""
    return {
        (k, completion["text"])
        for k, step in enumerate(record["label"]["steps"])
        for completion in step.get("completions") or []
        if completion.get("rating") == -1
    }


def test_training_examples_hold_every_negative_of_the_real_samples(shared_data: Path) -> None:
    wanted = found = 0
    for name in ["prm800k_phase1_sample.jsonl", "prm800k_phase2_sample.jsonl"]:
        for line in (shared_data / name).read_text().splitlines():
            record = json.loads(line)
            negatives = negative_completions(record)
            examples = training_examples(
                record["label"]["steps"], own_steps=record["question"].get("pre_generated_steps")
            )
            targets = {
                (k, text)
                for e in examples
                for k, (text, rating) in enumerate(zip(e.steps, e.ratings, strict=True))
                if rating == -1
            }
            wanted += len(negatives)
            found += len(negatives & targets)
    assert wanted > 50, "the samples are full of alternatives"
    assert found / wanted >= 0.95, (found, wanted)
