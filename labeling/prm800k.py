"""The one reader of PRM800K's ``label.steps``: validation, the chosen trajectory, rated branches.

Pure Python, no Django: the importer, both exports and the selector's training data all read
steps through here, so they agree on what a record says.

Shapes accepted (audit in docs/decisions/0008-prm800k-record-shapes.md; the public release's
own README, the HF schemas of its four files and TRL's converter of the real files):

- a step is ``{completions, human_completion, chosen_completion}``; a missing key reads as null;
- ``completions`` may be null (a ``give_up`` record's last step: nothing was shown or rated);
- a completion is ``{text, rating, flagged}``; ``rating`` is -1, 0, 1 or null (shown, not rated:
  a give-up's last step), ``flagged`` true, false or null (phase 2 writes null on the
  candidate's own steps);
- ``human_completion`` is null or ``{text, rating: null, source: "human", flagged,
  corrected_rating?}`` (phase 1: the labeler's own step after every alternative was rated;
  ``corrected_rating`` is in the phase-1 schema the HF hub inferred from the release, absent
  from our samples; Stepwise writes it as null);
- ``chosen_completion`` is null or an index into ``completions``; null where the labeler wrote
  the step (phase 1), at phase 2's error step (the candidate's own step is one of the rated
  completions) and on a give-up's last step.

Keys outside these sets are refused, as is anything that is not this shape: the importer keeps
``label.steps`` verbatim and re-exports it byte for byte, which an unknown key could break (on
PostgreSQL jsonb re-orders keys, and only the known ones happen to sort into PRM800K's order).

The chosen trajectory: at step i the labeler went on with ``completions[chosen_completion]``;
where that is null, with the candidate's own step when it is among the completions (phase 2's
error step: its rating, usually -1, is the step's, even with a corrected step written beside
it; an unrated own step gives way to a human completion), else with the human completion
(rating = ``corrected_rating``, else ``human_default``); else the trajectory stops there.
Branches are the rated completions it did not go on with, each after the trajectory's prefix
before its step.

A step the labeler wrote (phase 1's own step, the correction at phase 2's error step) is one
they stood behind: PRM800K's README calls it "their own +1 step", yet the records leave its
rating null. The readers take ``human_default`` for such a step: None (the record as written:
context, no target, no branch) by default here; training and the TRL export pass
``HUMAN_STEP_RATING`` unless asked to leave human completions out, so both count it as a
positive example.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from labeling.services.jsonl import LineInvalid, type_name

Source = Literal["model", "human"]

STEP_KEYS = frozenset({"completions", "human_completion", "chosen_completion"})
COMPLETION_KEYS = frozenset({"text", "rating", "flagged"})
HUMAN_KEYS = frozenset({"text", "rating", "source", "flagged", "corrected_rating"})
_RATINGS = (-1, 0, 1, None)
# The rating training and the TRL export give a human completion the record leaves unrated.
HUMAN_STEP_RATING = 1


def _check_rating(value: Any, name: str) -> None:
    # bool is an int in Python: true would pass as 1.
    if isinstance(value, bool) or value not in _RATINGS:
        raise LineInvalid(name, f"must be -1, 0, 1 or null, got {value!r}")


def _check_flag(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise LineInvalid(name, f"must be true, false or null, got {type_name(value)}")


def _check_object(value: Any, name: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LineInvalid(name, f"must be an object, got {type_name(value)}")
    unknown = value.keys() - keys
    if unknown:
        raise LineInvalid(f"{name}.{sorted(unknown)[0]}", "is not a PRM800K field")
    return value


def _check_text(value: dict[str, Any], name: str) -> None:
    text = value.get("text")
    if not isinstance(text, str):
        raise LineInvalid(f"{name}.text", f"must be a string, got {type_name(text)}")


def _plain_completion(value: Any) -> bool:
    """A completion that certainly passes the checks below (the common case, tested cheaply:
    the field names of an error are only built when this says no)."""
    if type(value) is not dict or not value.keys() <= COMPLETION_KEYS:
        return False
    rating = value.get("rating")
    flagged = value.get("flagged")
    return (
        type(value.get("text")) is str
        and (rating is None or (type(rating) is int and -1 <= rating <= 1))
        and (flagged is None or flagged is True or flagged is False)
    )


def label_steps_check(value: Any, *, name: str = "label.steps") -> list[dict[str, Any]]:
    """``value`` if it is a valid ``label.steps`` list, else ``LineInvalid`` naming the field."""
    if not isinstance(value, list):
        raise LineInvalid(name, f"must be an array, got {type_name(value)}")
    for i, step in enumerate(value):
        if type(step) is not dict or not step.keys() <= STEP_KEYS:
            _check_object(step, f"{name}[{i}]", STEP_KEYS)
        completions = step.get("completions")
        if completions is not None:
            if not isinstance(completions, list):
                raise LineInvalid(
                    f"{name}[{i}].completions",
                    f"must be an array or null, got {type_name(completions)}",
                )
            for j, completion in enumerate(completions):
                if not _plain_completion(completion):
                    cname = f"{name}[{i}].completions[{j}]"
                    _check_object(completion, cname, COMPLETION_KEYS)
                    _check_text(completion, cname)
                    _check_rating(completion.get("rating"), f"{cname}.rating")
                    _check_flag(completion.get("flagged"), f"{cname}.flagged")
        human = step.get("human_completion")
        if human is not None:
            hname = f"{name}[{i}].human_completion"
            _check_object(human, hname, HUMAN_KEYS)
            _check_text(human, hname)
            _check_rating(human.get("rating"), f"{hname}.rating")
            _check_rating(human.get("corrected_rating"), f"{hname}.corrected_rating")
            _check_flag(human.get("flagged"), f"{hname}.flagged")
            source = human.get("source")
            if source is not None and not isinstance(source, str):
                raise LineInvalid(f"{hname}.source", f"must be a string, got {type_name(source)}")
        chosen = step.get("chosen_completion")
        if chosen is not None:
            size = len(completions or ())
            if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < size:
                raise LineInvalid(
                    f"{name}[{i}].chosen_completion",
                    f"must be null or an index into {size} completions, got {chosen!r}",
                )
    return value


@dataclass(frozen=True, slots=True)
class ChosenStep:
    """One step of the chosen trajectory."""

    text: str
    rating: int | None
    flagged: bool
    source: Source
    completion: int | None  # index into the step's completions; None for the human one


@dataclass(frozen=True, slots=True)
class Branch:
    """A rated completion the labeler did not go on with, after the trajectory's prefix."""

    step: int  # index into label.steps (= len(prefix))
    prefix: tuple[str, ...]  # the chosen trajectory's texts before this step
    prefix_ratings: tuple[int | None, ...]
    text: str
    rating: int
    flagged: bool
    source: Source

    @property
    def after_error(self) -> bool:
        """A negative step precedes it: by the paper's rule it carries no target."""
        return -1 in self.prefix_ratings


def _human_rating(human: dict[str, Any], default: int | None) -> int | None:
    for key in ("corrected_rating", "rating"):
        rating = human.get(key)
        if rating is not None:
            return int(rating)
    return default


def _own_index(completions: list[dict[str, Any]], own: str | None) -> int | None:
    if own is None:
        return None
    for j, completion in enumerate(completions):
        if completion["text"] == own:
            return j
    return None


def chosen_trajectory(
    steps: Sequence[dict[str, Any]],
    *,
    own_steps: Sequence[str] | None = None,
    human_default: int | None = None,
) -> list[ChosenStep]:
    """The steps the labeler went on with, in order, ending where it ends (see module doc).

    ``own_steps`` is the candidate solution that was labeled (phase 2's
    ``pre_generated_steps``, a Stepwise solution's steps), when there is one;
    ``human_default`` the rating of a human step the record leaves unrated.
    """
    out: list[ChosenStep] = []
    for i, step in enumerate(steps):
        completions = step.get("completions") or []
        index = step.get("chosen_completion")
        human = step.get("human_completion")
        if index is None and own_steps is not None and i < len(own_steps):
            index = _own_index(completions, own_steps[i])
            # The candidate's own step counts where it was rated (phase 2's error step, even
            # with a corrected step written beside it) or where nothing else was written.
            if index is not None and human is not None and completions[index].get("rating") is None:
                index = None
        if index is not None:
            completion = completions[index]
            out.append(
                ChosenStep(
                    completion["text"],
                    completion.get("rating"),
                    completion.get("flagged") is True,
                    "model",
                    index,
                )
            )
            continue
        if human is None:
            break
        out.append(
            ChosenStep(
                human["text"],
                _human_rating(human, human_default),
                human.get("flagged") is True,
                "human",
                None,
            )
        )
    return out


def step_ratings(
    steps: Sequence[dict[str, Any]], *, own_steps: Sequence[str] | None = None
) -> list[int | None]:
    """One rating per entry of ``steps``: the chosen trajectory's, None past its end."""
    ratings: list[int | None] = [s.rating for s in chosen_trajectory(steps, own_steps=own_steps)]
    return ratings + [None] * (len(steps) - len(ratings))


def rated_branches(
    steps: Sequence[dict[str, Any]],
    *,
    own_steps: Sequence[str] | None = None,
    trajectory: Sequence[ChosenStep] | None = None,
    human_default: int | None = None,
) -> Iterator[Branch]:
    """Every rated completion off the chosen trajectory, in step then completion order.

    A step past the trajectory's end has no known prefix, so only steps up to and including
    the one where it stopped are read (in the real data nothing follows that step). A human
    completion off the trajectory (phase 2's correction) is a branch when it has a rating of
    its own or ``human_default`` gives it one; pass the same ``human_default`` as for
    ``trajectory``.
    """
    if trajectory is None:
        trajectory = chosen_trajectory(steps, own_steps=own_steps, human_default=human_default)
    texts = tuple(s.text for s in trajectory)
    ratings = tuple(s.rating for s in trajectory)
    for k in range(min(len(steps), len(trajectory) + 1)):
        step = steps[k]
        on_path = trajectory[k] if k < len(trajectory) else None
        taken = on_path.completion if on_path is not None else None
        for j, completion in enumerate(step.get("completions") or ()):
            rating = completion.get("rating")
            if rating is None or j == taken:
                continue
            yield Branch(
                k,
                texts[:k],
                ratings[:k],
                completion["text"],
                rating,
                completion.get("flagged") is True,
                "model",
            )
        human = step.get("human_completion")
        if human is not None and not (on_path is not None and on_path.source == "human"):
            rating = _human_rating(human, human_default)
            if rating is not None:
                yield Branch(
                    k,
                    texts[:k],
                    ratings[:k],
                    human["text"],
                    rating,
                    human.get("flagged") is True,
                    "human",
                )


@dataclass(frozen=True, slots=True)
class Example:
    """Steps and their targets (None = context only) for training a PRM."""

    steps: list[str]
    ratings: list[int | None]


def training_examples(
    steps: Sequence[dict[str, Any]],
    *,
    own_steps: Sequence[str] | None = None,
    include_flagged: bool = False,
    human_default: int | None = HUMAN_STEP_RATING,
) -> list[Example]:
    """The chosen trajectory with its own ratings, then one example per branch.

    A branch's prefix is context only (its steps are targets once, in the trajectory's
    example), so a prefix shared by seven alternatives is not counted eight times. Flagged
    steps are context unless ``include_flagged``. Branches after a negative step are dropped:
    targets run up to and including the first negative of each branch. A step the labeler
    wrote is a positive target unless ``human_default=None`` leaves it context.
    """
    trajectory = chosen_trajectory(steps, own_steps=own_steps, human_default=human_default)
    examples: list[Example] = []
    if trajectory:
        examples.append(
            Example(
                [s.text for s in trajectory],
                [None if s.flagged and not include_flagged else s.rating for s in trajectory],
            )
        )
    for branch in rated_branches(steps, trajectory=trajectory, human_default=human_default):
        if branch.after_error or (branch.flagged and not include_flagged):
            continue
        examples.append(
            Example([*branch.prefix, branch.text], [None] * branch.step + [branch.rating])
        )
    return examples


def ratings_combine(votes: Sequence[int]) -> int | None:
    """One rating from several labelers' ratings of the same step: negative if most say so;
    None on a tie between negative and not (the caller lists those); otherwise the more common
    of 0 and +1, 0 on a tie (the cautious reading)."""
    negatives = sum(1 for v in votes if v == -1)
    rest = len(votes) - negatives
    if negatives > rest:
        return -1
    if negatives == rest:
        return None
    positives = sum(1 for v in votes if v == 1)
    return 1 if positives > rest - positives else 0
