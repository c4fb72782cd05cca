"""Both scoring paths (``candidates_score`` and a chunked score job) store the ensemble's
uncertainty and per-step epistemic/aleatoric parts, and leave them null without an ensemble."""

import pytest

from labeling.models import Solution
from selector.ml.scoring import ScoredSolution
from selector.models import SelectorVersion, SolutionScore, VersionStatus
from selector.services import candidates_score, job_execute, job_start
from tests.factories import ProblemFactory, SolutionFactory


class FakeScorer:
    """Even solution ids come back with an ensemble's figures, odd ones without (None)."""

    def __init__(self, ids_in_order: list[int]) -> None:
        self.ids = iter(ids_in_order)

    def score(self, items, progress=None):
        results = []
        for _ in items:
            solution_id = next(self.ids)
            if solution_id % 2 == 0:
                results.append(
                    ScoredSolution(
                        step_scores=[0.9, 0.5],
                        score=0.45,
                        truncated_steps=0,
                        epistemic=[0.125, solution_id / 1000],
                        aleatoric=[0.5, 0.25],
                        uncertainty=solution_id / 1000,
                    )
                )
            else:
                results.append(ScoredSolution(step_scores=[0.7], score=0.7, truncated_steps=1))
        if progress is not None:
            progress(len(items), len(items))
        return results


@pytest.fixture
def pool(db, settings, monkeypatch):
    settings.SELECTOR_EVAL_FRACTION = 0.0
    problem = ProblemFactory()
    Solution.objects.bulk_create([SolutionFactory.build(problem=problem) for _ in range(6)])
    version = SelectorVersion.objects.create(
        name="ens",
        base_model="-",
        checkpoint_path="/nowhere",
        status=VersionStatus.READY,
        is_active=True,
        ensemble_heads=5,
    )
    ids = sorted(Solution.objects.values_list("pk", flat=True))

    def load(_version):
        return FakeScorer(ids)

    monkeypatch.setattr("selector.services.scoring.scorer_load", load)
    monkeypatch.setattr("selector.services.score_chunks.scorer_load", load)
    return version


def assert_stored(version) -> None:
    rows = list(SolutionScore.objects.filter(version=version).order_by("solution_id"))
    assert len(rows) == 6
    for row in rows:
        if row.solution_id % 2 == 0:
            assert row.uncertainty == row.solution_id / 1000
            assert row.step_epistemic == [0.125, row.solution_id / 1000]
            assert row.step_aleatoric == [0.5, 0.25]
            assert (row.score, row.step_scores, row.truncated_steps) == (0.45, [0.9, 0.5], 0)
        else:
            assert row.uncertainty is None
            assert row.step_epistemic is None and row.step_aleatoric is None
            assert (row.score, row.step_scores, row.truncated_steps) == (0.7, [0.7], 1)


def test_candidates_score_stores_the_uncertainty_fields(pool):
    assert candidates_score(version=pool) == 6
    assert_stored(pool)


def test_a_score_job_stores_the_uncertainty_fields(pool):
    job = job_start(kind="score", version=pool, enqueue=False)
    job_execute(job_id=job.pk)
    assert_stored(pool)
