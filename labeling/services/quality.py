"""Agreement with gold labels, and the screening decision the queue relies on.

The arithmetic here is pure (lists of ratings in, numbers out) so QC reports can reuse it on
any pairing of labels. Definitions:

* **Step agreement** of one label with its gold label: over the *common prefix* — the steps
  both of them rated (``min(len(ratings), len(gold))`` positions, skipping positions where
  either rating is ``None``) — the number of positions whose ratings are equal. Pooled over
  several labels it is ``sum(matched) / sum(compared)`` (a micro average, so long solutions
  weigh more, as they hold more step decisions).
* **First-error agreement**: both labels put their first ``-1`` at the same step index, or
  neither has a ``-1``. Pooled, it is the fraction of label pairs that agree.

Recording the screening verdict, the one write built on it, is ``labeling.services.screening``.
"""

import hashlib
import hmac
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings

from labeling.models import QualitySettings

Ratings = Sequence[int | None]


@dataclass(frozen=True)
class StepAgreement:
    matched: int
    compared: int


@dataclass(frozen=True)
class AgreementSummary:
    labels: int  # label pairs compared
    steps_matched: int
    steps_compared: int
    first_error_matches: int

    @property
    def step_agreement(self) -> float | None:
        """Pooled step agreement, or None when no step could be compared."""
        return self.steps_matched / self.steps_compared if self.steps_compared else None

    @property
    def first_error_agreement(self) -> float | None:
        return self.first_error_matches / self.labels if self.labels else None


def step_agreement(*, ratings: Ratings, gold: Ratings) -> StepAgreement:
    """Matches over the common rated prefix of ``ratings`` and ``gold``."""
    matched = compared = 0
    for mine, theirs in zip(ratings, gold, strict=False):
        if mine is None or theirs is None:
            continue
        compared += 1
        matched += int(mine == theirs)
    return StepAgreement(matched=matched, compared=compared)


def first_error_index(ratings: Ratings) -> int | None:
    """Index of the first ``-1`` rating, or None when there is none."""
    for index, rating in enumerate(ratings):
        if rating == -1:
            return index
    return None


def first_error_agrees(*, ratings: Ratings, gold: Ratings) -> bool:
    return first_error_index(ratings) == first_error_index(gold)


def agreement_summarise(pairs: Iterable[tuple[Ratings, Ratings]]) -> AgreementSummary:
    """Pool (annotator ratings, gold ratings) pairs into one summary."""
    labels = matched = compared = first_error = 0
    for ratings, gold in pairs:
        steps = step_agreement(ratings=ratings, gold=gold)
        labels += 1
        matched += steps.matched
        compared += steps.compared
        first_error += int(first_error_agrees(ratings=ratings, gold=gold))
    return AgreementSummary(
        labels=labels,
        steps_matched=matched,
        steps_compared=compared,
        first_error_matches=first_error,
    )


def screening_passes(*, summary: AgreementSummary, pass_mark: float) -> bool:
    """The screening verdict: pooled step agreement at or above the pass mark.

    With no comparable step at all (every gold label empty) there is no evidence against the
    annotator, so they pass.
    """
    agreement = summary.step_agreement
    return agreement is None or agreement >= pass_mark


# QC positions (issue 18, M4). A fixed spacing told a careless annotator when to be careful,
# so the number of normal labels before each QC question is drawn anew after every QC label:
# uniform between a minimum gap (this share of the mean, so two QC questions never come close
# together) and as far above the mean, so the long-run rate is the configured one.
QC_MIN_GAP_SHARE = 0.5


def qc_mean_gap(qc_rate: float) -> float:
    """Normal labels between QC questions, on average: ``qc_rate`` 0.2 gives 4 (one in five)."""
    return 1 / qc_rate - 1


def qc_min_gap(qc_rate: float) -> int | None:
    """The fewest normal labels between two QC questions; None when QC is switched off."""
    if qc_rate <= 0:
        return None
    return math.floor(qc_mean_gap(qc_rate) * QC_MIN_GAP_SHARE)


def qc_gap(*, qc_rate: float, draw: float) -> int | None:
    """Normal labels to make before the next QC question, from the annotator's ``draw`` in
    [0, 1) (``AnnotatorProfile.qc_draw``, redrawn with each QC label); None when QC is off.

    ``floor`` of a value uniform on [min gap, 2 * mean - min gap + 1): every whole gap in that
    range is equally likely and their mean is the mean gap (exactly when twice it is whole).
    Computed from the current rate at each claim, so a new rate applies at once.
    """
    low = qc_min_gap(qc_rate)
    if low is None:
        return None
    width = 2 * (qc_mean_gap(qc_rate) - low) + 1
    return low + math.floor(min(max(draw, 0.0), 1.0 - 1e-12) * width)


def qc_reveal_after(*, label_id: int, qc_rate: float) -> int:
    """How many further labels an annotator makes before a QC label of theirs counts in their
    own statistics (``/api/me``'s gold agreement).

    Counted at once, a change right after a submit would tell that the task was QC. The delay
    is at least the minimum gap (by then the window that knowledge would make safe is over) and
    up to a longest gap more; it is derived from the label id and the secret key, so it is fixed
    per label (the figure never flickers) and cannot be predicted without the key.
    """
    low, spread = _reveal_range(qc_rate)
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"qc-reveal:{label_id}".encode(), hashlib.sha256
    ).digest()
    return low + 1 + int.from_bytes(digest[:8], "big") % spread


def qc_reveal_window(qc_rate: float) -> int:
    """The longest ``qc_reveal_after`` at this rate: older labels always count."""
    low, spread = _reveal_range(qc_rate)
    return low + spread


def _reveal_range(qc_rate: float) -> tuple[int, int]:
    """(minimum gap, how many delays above it are possible); QC off: 1 to 10 labels."""
    low = qc_min_gap(qc_rate)
    if low is None:
        return 0, 10
    return low, math.ceil(2 * (qc_mean_gap(qc_rate) - low)) + 1


def quality_settings_get() -> QualitySettings:
    settings_row, _ = QualitySettings.objects.get_or_create(pk=1)
    return settings_row
