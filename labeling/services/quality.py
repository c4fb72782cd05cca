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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


def qc_interval(qc_rate: float) -> int | None:
    """Serve a QC question once this many other labels have been made since the last one.

    ``qc_rate`` 0.1 gives 9: nine normal labels, then a QC question, i.e. one in ten.
    None means QC is switched off.
    """
    if qc_rate <= 0:
        return None
    return max(0, round(1 / qc_rate) - 1)


def quality_settings_get() -> QualitySettings:
    settings_row, _ = QualitySettings.objects.get_or_create(pk=1)
    return settings_row
