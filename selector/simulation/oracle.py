"""A simulated annotator that answers from known step labels, with phase-2 semantics.

It rates steps in order up to and including the first step it rates -1 (``found_error``); if
it reaches the end without one, the finish reason is ``solution``. A step whose true rating is
unknown (a file that did not say) ends the task with ``give_up``.

Noise, all seeded by (seed, annotator, item), so a run is reproducible and every arm sees the
same answer for the same item:

- ``flip_rate``: a -1 is rated +1 (a missed error) or a 0/+1 is rated -1 (a false alarm);
- ``neutral_rate``: a +1 is rated 0;
- ``bias``: annotator ``a`` of ``n`` gets a lean ``b_a`` spread evenly over [-bias, +bias];
  a lenient one (b > 0) misses errors with probability ``flip_rate + b``, a harsh one
  (b < 0) raises false alarms with probability ``flip_rate - b``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class OracleAnswer:
    ratings: list[int]
    finish_reason: str  # found_error | solution | give_up
    note: str = ""


@dataclass(frozen=True)
class Oracle:
    flip_rate: float = 0.0
    neutral_rate: float = 0.0
    bias: float = 0.0
    annotators: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("flip_rate", "neutral_rate", "bias"):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.5:
                raise ValueError(f"{name} must be within 0..0.5, got {value!r}")
        if self.annotators < 1:
            raise ValueError(f"annotators must be at least 1, got {self.annotators!r}")

    def lean(self, annotator: int) -> float:
        if self.annotators == 1:
            return 0.0
        return self.bias * (2 * annotator / (self.annotators - 1) - 1)

    def answer(
        self, truth: Sequence[int | None], *, annotator: int = 0, item: int | str = 0
    ) -> OracleAnswer:
        """Rate a candidate whose known ratings are ``truth`` (None after its first error)."""
        rng = random.Random(f"oracle:{self.seed}:{annotator}:{item}")
        lean = self.lean(annotator)
        p_miss = min(1.0, self.flip_rate + max(0.0, lean))
        p_false = min(1.0, self.flip_rate + max(0.0, -lean))
        ratings: list[int] = []
        past_error = False  # a missed error: the truth after it is unknown, read on as correct
        for true in truth:
            if true is None and not past_error:
                return OracleAnswer(ratings, "give_up", "the rating of this step is unknown")
            rating = 1 if true is None else true
            # One draw per decision, always made, so one option does not shift another's draws.
            draw_flip, draw_neutral = rng.random(), rng.random()
            if rating == -1:
                if draw_flip < p_miss:
                    rating, past_error = 1, True
            elif draw_flip < p_false:
                rating = -1
            if rating == 1 and draw_neutral < self.neutral_rate:
                rating = 0
            ratings.append(rating)
            if rating == -1:
                return OracleAnswer(ratings, "found_error")
        return OracleAnswer(ratings, "solution")
