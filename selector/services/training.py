"""Training data (labels → trajectories, split by problem) and training a new version."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from jobs.models import Job
from labeling.models import FinishReason, Label, TaskKind
from selector.models import SelectorVersion, VersionStatus
from selector.services.common import Progress, SelectorError, progress_for
from selector.services.versions import (
    base_model_path,
    selector_active,
    version_dir,
    version_name_default,
    version_require_ready,
)

# The frozen held-out split: the same problems stay out of training for every version, so
# versions are compared on the same data. Changing these invalidates every stored metric.
EVAL_FRACTION: float = getattr(settings, "SELECTOR_EVAL_FRACTION", 0.1)
EVAL_SEED: int = getattr(settings, "SELECTOR_EVAL_SEED", 0)


@dataclass
class LabeledTrajectory:
    problem_key: str
    problem: str
    steps: list[str]
    ratings: list[int | None]
    finish_reason: str
    label_id: int
    solution_id: int


def _trajectory(label: Label) -> tuple[list[str], list[int | None]]:
    """The rated trajectory: per step, the chosen completion's text (or the human one)."""
    solution_steps = list(label.task.solution.steps or [])
    steps: list[str] = []
    for i, step in enumerate(label.steps or []):
        text: str | None = None
        chosen = step.get("chosen_completion")
        completions = step.get("completions") or []
        if chosen is not None and 0 <= chosen < len(completions):
            text = completions[chosen].get("text")
        elif step.get("human_completion"):
            text = step["human_completion"].get("text")
        if text is None and i < len(solution_steps):
            text = solution_steps[i]
        if text is None:
            break
        steps.append(text)
    ratings = list(label.ratings or [])[: len(steps)]
    ratings += [None] * (len(steps) - len(ratings))
    return steps, ratings


def labeled_trajectories() -> Iterable[LabeledTrajectory]:
    """Every label usable for training or evaluation: normal tasks only (QC and screening
    items are excluded, imported PRM800K labels included), minus broken problems."""
    labels = (
        Label.objects.filter(task__kind=TaskKind.NORMAL)
        .exclude(finish_reason=FinishReason.BAD_PROBLEM)
        .select_related("task__solution__problem")
        .only(
            "id",
            "steps",
            "ratings",
            "finish_reason",
            "task__solution__id",
            "task__solution__steps",
            "task__solution__problem__unique_id",
            "task__solution__problem__problem",
        )
        .order_by("pk")
    )
    for label in labels.iterator(chunk_size=2000):
        steps, ratings = _trajectory(label)
        if not steps or all(r is None for r in ratings):
            continue
        problem = label.task.solution.problem
        yield LabeledTrajectory(
            problem_key=problem.unique_id,
            problem=problem.problem,
            steps=steps,
            ratings=ratings,
            finish_reason=label.finish_reason,
            label_id=label.pk,
            solution_id=label.task.solution.pk,
        )


def held_out_keys(keys: Iterable[str]) -> set[str]:
    from selector.ml.training import split_by_problem

    _, held_out = split_by_problem(sorted(set(keys)), eval_fraction=EVAL_FRACTION, seed=EVAL_SEED)
    return held_out


def trajectories_split() -> tuple[list[LabeledTrajectory], list[LabeledTrajectory]]:
    """(train, held_out), split by problem on a hash of its unique_id: a frozen held-out set."""
    items = list(labeled_trajectories())
    held_out = held_out_keys(t.problem_key for t in items)
    train = [t for t in items if t.problem_key not in held_out]
    evaluation = [t for t in items if t.problem_key in held_out]
    return train, evaluation


# --- Training -------------------------------------------------------------------------------


def selector_train(
    *,
    job: Job | None = None,
    base_version: SelectorVersion | None = None,
    epochs: int = 3,
    learning_rate: float = 5e-5,
    name: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> SelectorVersion:
    """Train a new version on the labels so far, starting from ``base_version`` (default: the
    active version; with none, a fresh PRM from the base model). The new version is ready but
    not active: evaluate and promote it explicitly."""
    from selector.ml.prm import prm_init
    from selector.ml.training import TrainExample, train

    if epochs < 1:
        raise SelectorError(f"epochs must be at least 1, got {epochs!r}")
    report = progress_for(job, progress)
    base_version = base_version or selector_active()
    if base_version is not None:
        version_require_ready(base_version)
    train_items, held_out = trajectories_split()
    if not train_items:
        raise SelectorError(
            "no training labels: every label is on a held-out problem, a QC/screening task, "
            "or there are none yet"
        )
    name = name or version_name_default("v")
    output_dir = version_dir(name)
    base_model = base_version.base_model if base_version else base_model_path(None)
    version = SelectorVersion.objects.create(
        name=name,
        base_model=base_model,
        checkpoint_path=str(output_dir),
        status=VersionStatus.TRAINING,
    )
    if job is not None:
        job.version = version
        job.save(update_fields=["version"])
    # With no version to start from, a fresh PRM is made beside the new one and removed after.
    fresh_init = output_dir.with_name(f".{name}-init") if base_version is None else None
    try:
        if fresh_init is None:
            assert base_version is not None
            init_from = base_version.checkpoint_path
        else:
            init_from = str(fresh_init)
            prm_init(base_model=base_model, output_dir=fresh_init)
        summary = train(
            init_from=init_from,
            examples=[
                TrainExample(problem=t.problem, steps=t.steps, ratings=t.ratings)
                for t in train_items
            ],
            output_dir=output_dir,
            epochs=epochs,
            learning_rate=learning_rate,
            token_budget=settings.SELECTOR_TOKEN_BUDGET // 2,
            max_length=settings.SELECTOR_MAX_LENGTH,
            seed=seed,
            device=settings.SELECTOR_DEVICE,
            progress=report,
        )
    except Exception as exc:
        version.status = VersionStatus.FAILED
        version.training_summary = {"error": f"{type(exc).__name__}: {exc}"}
        version.save(update_fields=["status", "training_summary"])
        raise
    finally:
        if fresh_init is not None:
            shutil.rmtree(fresh_init, ignore_errors=True)
    version.status = VersionStatus.READY
    version.training_summary = {
        **dict(summary),
        "init_from": base_version.name if base_version else f"base:{base_model}",
        "train_labels": len(train_items),
        "train_problems": len({t.problem_key for t in train_items}),
        "held_out_labels": len(held_out),
        "held_out_problems": len({t.problem_key for t in held_out}),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "seed": seed,
    }
    version.save(update_fields=["status", "training_summary"])
    return version
