"""A trained version records its ensemble's size from the training summary (issue 20), and
the training service passes SELECTOR_ENSEMBLE_HEADS on to ``train``."""

import pytest

from selector.services import selector_train
from tests.factories import LabelFactory, ProblemFactory, SolutionFactory, TaskFactory


def labels(n: int = 6) -> None:
    for p in range(n):
        problem = ProblemFactory(unique_id=f"test/algebra/{p}.json", answer="4")
        solution = SolutionFactory.create(problem=problem, steps=["2 + 2 = 4", "# Answer\n\n4"])
        LabelFactory(
            task=TaskFactory(solution=solution),
            steps=[
                {
                    "completions": [{"text": "2 + 2 = 4", "rating": 1, "flagged": False}],
                    "human_completion": None,
                    "chosen_completion": 0,
                }
            ],
            ratings=[1],
        )


@pytest.mark.parametrize(("summary", "stored"), [({"ensemble_heads": 5}, 5), ({}, 1)])
def test_the_version_records_the_summary_ensemble_heads(
    db, selector_settings, monkeypatch, summary, stored
):
    selector_settings.SELECTOR_ENSEMBLE_HEADS = 7
    seen = {}

    def fake_train(**kwargs):
        seen.update(kwargs)
        return {"epochs_run": 1, **summary}

    monkeypatch.setattr("selector.ml.training.train", fake_train)
    monkeypatch.setattr("selector.ml.prm.prm_init", lambda **kwargs: None)
    monkeypatch.setattr("selector.services.training.threshold_on_validation", lambda *a, **k: 0.5)
    labels()
    version = selector_train(epochs=1)
    assert seen["ensemble_heads"] == 7
    version.refresh_from_db()
    assert version.ensemble_heads == stored
    assert version.has_ensemble is (stored > 1)
