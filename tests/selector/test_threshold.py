"""The first-error threshold: chosen on held-in validation data (training problems kept out of
the fit), never on the held-out set; stored with the version and reported beside F1 at 0.5."""

from labeling.models import Label
from selector.ml.metrics import threshold_choose
from selector.queries import metrics_table
from selector.services import selector_create_base, selector_evaluate, selector_train
from selector.services.training import trajectories_split, validation_split
from tests.selector.test_pipeline import build_world


def test_threshold_choose_takes_the_best_f1_and_keeps_the_default_without_both_sides():
    # Correct solutions score 0.6-0.7, the erroneous one's first error 0.3: at 0.5 every
    # call is right, at 0.65 a correct one is flagged, at 0.25 the error is missed.
    solutions = [([0.9, 0.6], None), ([0.7, 0.65], None), ([0.8, 0.3, 0.1], 1)]
    chosen = threshold_choose(solutions)
    assert chosen["chosen"] and chosen["f1"] == 1.0
    assert 0.3 < chosen["value"] <= 0.6
    assert threshold_choose(solutions, grid=[0.25, 0.65])["f1"] < 1.0
    only_correct = threshold_choose([([0.9], None)])
    assert only_correct == {"value": 0.5, "chosen": False, "f1": None, "solutions": 1}


def test_threshold_is_chosen_on_held_in_validation_never_on_the_held_out_set(db, selector_settings):
    build_world()
    selector_create_base()
    first = selector_train(epochs=1, name="t1", threshold_fraction=0.3, seed=3)
    chosen = first.training_summary["threshold"]
    assert chosen["chosen_on"] == "held-in validation"

    train_items, held_out = trajectories_split()
    fit, validation = validation_split(train_items, 0.3)
    held_keys = {t.problem_key for t in held_out}
    validation_keys = {t.problem_key for t in validation}
    assert held_keys and validation_keys and not held_keys & validation_keys
    assert not validation_keys & {t.problem_key for t in fit}
    assert chosen["problems"] == len(validation_keys)
    assert first.training_summary["validation_labels"] == len(validation)

    # Rewrite every held-out label (errors become correct and back): a threshold read from
    # the held-out set would move; one chosen on held-in validation data cannot.
    for label in Label.objects.filter(task__solution__problem__unique_id__in=held_keys):
        flipped = -1 in label.ratings
        label.ratings = [1] * len(label.ratings) if flipped else [-1]
        label.finish_reason = "solution" if flipped else "found_error"
        label.save(update_fields=["ratings", "finish_reason"])
    second = selector_train(epochs=1, name="t2", threshold_fraction=0.3, seed=3)
    assert second.training_summary["threshold"] == chosen

    # Evaluation reports F1 at 0.5 and at the version's threshold, in the shared table.
    metrics = selector_evaluate(version=first)
    assert metrics["first_error"]["threshold"] == 0.5
    assert metrics["first_error_tuned"]["threshold"] == chosen["value"]
    assert metrics["first_error_tuned"]["n_erroneous"] == metrics["first_error"]["n_erroneous"]
    rows = {label: mine for label, mine, _theirs, _diff in metrics_table(metrics=metrics)}
    assert "First-error F1" in rows and "First-error F1 at the held-in threshold" in rows
    assert rows["… that threshold (chosen on held-in validation)"] == f"{chosen['value']:.3f}"
