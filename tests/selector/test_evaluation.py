"""Evaluation statistics: paired bootstrap intervals, majority-vote classes by the grader."""

import random

import pytest
from django.urls import reverse

from labeling.models import Grade
from selector import metric_rows
from selector.models import SelectorVersion, VersionStatus
from selector.services.evaluation import Outcomes, answer_classes, paired_bootstrap
from tests.selector.test_admin import METRICS


def outcomes(n_problems: int, *, skill: float, seed: int) -> Outcomes:
    """Per problem, 6 rated steps (2 negative); ``skill`` 1 ranks every negative below every
    positive, 0 scores at random."""
    rng = random.Random(seed)
    out = Outcomes()
    for p in range(n_problems):
        key = f"p{p}"
        for rating in (1, 1, 1, 1, -1, -1):
            noise = rng.random()
            clean = 0.9 if rating == 1 else 0.1
            out.step_units.append(key)
            out.step_scores.append(skill * clean + (1 - skill) * noise)
            out.step_ratings.append(rating)
        out.fe_units.append(key)
        out.fe_items.append(([0.9, 0.9 * skill + (1 - skill) * rng.random()], 1))
        out.fe_units.append(key)
        out.fe_items.append(([0.9, 0.9], None))
        out.bon[key] = {
            "selector": {1: rng.random(), 2: skill},
            "majority": {1: 0.5, 2: 0.5},
            "random": {1: 0.5, 2: 0.5},
        }
    return out


def test_a_clearly_better_challenger_gets_an_interval_above_zero():
    units = [f"p{p}" for p in range(30)]
    good, poor = outcomes(30, skill=1.0, seed=1), outcomes(30, skill=0.0, seed=2)
    spans = paired_bootstrap(good, poor, units=units, ns=[1, 2], resamples=200, seed=0)
    auroc = spans["step.auroc"]
    assert auroc["diff"] is not None and 0 < auroc["low"] <= auroc["diff"] <= auroc["high"]
    assert metric_rows.verdict(auroc) == "better"
    assert metric_rows.verdict(spans["best_of_n.selector@2"]) == "better"
    reverse_spans = paired_bootstrap(poor, good, units=units, ns=[1, 2], resamples=200, seed=0)
    assert metric_rows.verdict(reverse_spans["step.auroc"]) == "worse"
    # Seeded: the same call gives the same interval.
    again = paired_bootstrap(good, poor, units=units, ns=[1, 2], resamples=200, seed=0)
    assert again == spans


def test_a_version_against_itself_differs_by_exactly_zero():
    units = [f"p{p}" for p in range(10)]
    same = outcomes(10, skill=0.5, seed=3)
    spans = paired_bootstrap(same, same, units=units, ns=[1, 2], resamples=100, seed=0)
    for key, span in spans.items():
        assert (span["diff"], span["low"], span["high"]) == (0.0, 0.0, 0.0), key
        assert (
            metric_rows.verdict(span) == "no difference"
        )  # issue 19: [+0.000, +0.000] is not "unclear"


def test_every_headline_row_has_an_interval():
    units = [f"p{p}" for p in range(5)]
    a, b = outcomes(5, skill=0.8, seed=4), outcomes(5, skill=0.2, seed=5)
    spans = paired_bootstrap(a, b, units=units, ns=[1, 2], resamples=50, seed=0)
    assert {row.key for row in metric_rows.HEADLINE_ROWS} <= set(spans)


@pytest.mark.slow
def test_majority_vote_merges_answers_the_grader_finds_equivalent():
    pools = {
        1: [
            ("\\frac{14}{3}", Grade.INCORRECT),
            ("14/3", Grade.INCORRECT),
            ("4\\frac{2}{3}", Grade.INCORRECT),
            ("(1,2]", Grade.INCORRECT),
            ("(1,2)", Grade.INCORRECT),
            ("7", Grade.CORRECT),
            ("7.0", Grade.CORRECT),
        ]
    }
    classes = answer_classes(pools=pools)
    same = {classes[(1, a)] for a in ("\\frac{14}{3}", "14/3", "4\\frac{2}{3}")}
    assert len(same) == 1
    assert classes[(1, "(1,2]")] != classes[(1, "(1,2)")]
    assert classes[(1, "(1,2]")] not in same and classes[(1, "(1,2)")] not in same
    assert classes[(1, "7")] == classes[(1, "7.0")] == "correct"


@pytest.mark.django_db
def test_version_page_shows_intervals_and_warns_when_the_challenger_is_not_better(client):
    from tests.factories import UserFactory

    units = [f"p{p}" for p in range(20)]
    worse = paired_bootstrap(
        outcomes(20, skill=0.0, seed=6),
        outcomes(20, skill=1.0, seed=7),
        units=units,
        ns=[1, 2],
        resamples=100,
        seed=0,
    )
    SelectorVersion.objects.create(
        name="base", base_model="-", status=VersionStatus.READY, is_active=True
    )
    metrics = {**METRICS, "comparison": {"against": "base", "intervals": worse}}
    v1 = SelectorVersion.objects.create(
        name="v1", base_model="-", status=VersionStatus.READY, metrics=metrics
    )
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    body = client.get(reverse("admin:selector_selectorversion_change", args=[v1.pk])).content
    text = body.decode()
    assert 'id="comparison-warning"' in text and "Worse than base" in text
    span = worse["step.auroc"]
    assert f"{span['diff']:+.3f} [{span['low']:+.3f}, {span['high']:+.3f}] worse" in text
    # The promote button leads to the confirmation page, which asks first.
    assert reverse("admin:selector_selectorversion_promote", args=[v1.pk]) in text


def test_bootstrap_ranking_metrics_match_sklearn_with_weights_and_ties():
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    from selector.ml.metrics import ranking_metrics

    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(5, 200))
        y = rng.random(n) < 0.3
        y[0], y[1] = True, False  # both classes present
        risk = np.round(rng.random(n), 1)  # many ties
        w = rng.integers(1, 4, n).astype(float)
        auroc, ap = ranking_metrics(y, risk, w)
        assert auroc == pytest.approx(roc_auc_score(y, risk, sample_weight=w))
        assert ap == pytest.approx(average_precision_score(y, risk, sample_weight=w))


@pytest.mark.django_db
def test_numbers_from_another_evaluation_set_are_marked_not_comparable(client):
    from tests.factories import UserFactory

    SelectorVersion.objects.create(
        name="base",
        base_model="-",
        status=VersionStatus.READY,
        is_active=True,
        metrics={"step": {"auroc": 0.6}, "eval_set": {"id": 1}},
    )
    v2 = SelectorVersion.objects.create(
        name="v2",
        base_model="-",
        status=VersionStatus.READY,
        metrics={"step": {"auroc": 0.7}, "eval_set": {"id": 2}},
    )
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    body = client.get(reverse("admin:selector_selectorversion_change", args=[v2.pk])).content
    assert "base (another evaluation set: not comparable)" in body.decode()
