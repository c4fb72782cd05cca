"""Training data (labels → trajectories, split by problem) and training a new version."""

from __future__ import annotations

import hashlib
import itertools
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q

from jobs.models import Job
from labeling.models import AnnotatorProfile, FinishReason, Label, Problem, TaskKind
from labeling.prm800k import (
    HUMAN_STEP_RATING,
    Branch,
    ChosenStep,
    chosen_trajectory,
    rated_branches,
    ratings_combine,
)
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
CHECK_SECONDS = 0.5  # a training job looks for a cancel this often, whatever its settings
# The held-in validation slice: this share of the *training* problems is kept out of the fit
# and used only to choose the version's first-error threshold (never the held-out set).
THRESHOLD_FRACTION: float = getattr(settings, "SELECTOR_THRESHOLD_FRACTION", 0.1)
THRESHOLD_SEED = 7919


@dataclass
class LabeledTrajectory:
    problem_key: str
    problem: str
    steps: list[str]
    ratings: list[int | None]
    finish_reason: str
    label_id: int
    solution_id: int
    task_id: int = 0
    labeler: str = ""
    flagged: list[bool] = field(default_factory=list)  # per step of ``steps``
    human: list[bool] = field(default_factory=list)  # per step: the labeler wrote it
    # The rated completions off the trajectory (PRM800K's alternatives): more examples.
    branches: list[Branch] = field(default_factory=list)


def _trajectory(label: Label) -> tuple[list[ChosenStep], list[Branch]]:
    """The label's chosen trajectory and rated branches, read by the one PRM800K reader; a
    step the labeler wrote counts as positive (``LabelHygiene`` may leave it out later)."""
    own_steps = list(label.task.solution.steps or [])
    trajectory = chosen_trajectory(
        label.steps or [], own_steps=own_steps, human_default=HUMAN_STEP_RATING
    )
    branches = list(
        rated_branches(label.steps or [], trajectory=trajectory, human_default=HUMAN_STEP_RATING)
    )
    return trajectory, branches


def labeled_trajectories(
    *, reserved: bool | None = None, by_task: bool = False
) -> Iterator[LabeledTrajectory]:
    """Every label usable for training or evaluation: normal tasks only (QC and screening
    items are excluded, imported PRM800K labels included), minus broken problems. Streamed
    from a server-side cursor, in label order (``by_task``: by task, then label, so a task's
    labels come together). ``reserved`` keeps only labels on problems reserved for the
    evaluation set (True) or only the others (False); decide the reservation first."""
    labels = Label.objects.filter(task__kind=TaskKind.NORMAL).exclude(
        finish_reason=FinishReason.BAD_PROBLEM
    )
    if reserved is not None:
        labels = labels.filter(task__solution__problem__eval_reserved=reserved)
    labels = (
        labels.select_related("task__solution__problem")
        .only(
            "id",
            "labeler",
            "steps",
            "finish_reason",
            "task__id",
            "task__solution__id",
            "task__solution__steps",
            "task__solution__problem__unique_id",
            "task__solution__problem__problem",
        )
        .order_by(*(("task_id", "pk") if by_task else ("pk",)))
    )
    texts: dict[str, str] = {}  # one copy of each problem's text, however many labels it has
    for label in labels.iterator(chunk_size=2000):
        trajectory, branches = _trajectory(label)
        # Every rated completion is an example, whatever the trajectory: a phase-1 label whose
        # first step has only -1 alternatives has an empty trajectory but rated branches.
        if all(s.rating is None for s in trajectory) and not branches:
            continue
        problem = label.task.solution.problem
        yield LabeledTrajectory(
            problem_key=problem.unique_id,
            problem=texts.setdefault(problem.unique_id, problem.problem),
            steps=[s.text for s in trajectory],
            ratings=[s.rating for s in trajectory],
            finish_reason=label.finish_reason,
            label_id=label.pk,
            solution_id=label.task.solution.pk,
            task_id=label.task.pk,
            labeler=str(label.labeler),
            flagged=[s.flagged for s in trajectory],
            human=[s.source == "human" for s in trajectory],
            branches=branches,
        )


def held_out_keys(keys: Iterable[str]) -> set[str]:
    """The keys (problem unique_ids) reserved for the frozen evaluation set."""
    from selector.services.eval_set import eval_set_reserve

    eval_set_reserve()
    wanted = set(keys)
    reserved = Problem.objects.filter(eval_reserved=True).values_list("unique_id", flat=True)
    return {key for key in reserved.iterator(chunk_size=5000) if key in wanted}


def trajectories_split() -> tuple[list[LabeledTrajectory], list[LabeledTrajectory]]:
    """(train, held_out), split by problem: every label on a problem reserved for the frozen
    evaluation set is held out, whoever queued it, so no version ever trains on one."""
    items = list(labeled_trajectories())
    held_out = held_out_keys(t.problem_key for t in items)
    train = [t for t in items if t.problem_key not in held_out]
    evaluation = [t for t in items if t.problem_key in held_out]
    return train, evaluation


@dataclass(frozen=True)
class LabelHygiene:
    """Which labels and steps become training targets (each shown in ``training_summary``)."""

    # Labels of annotators who failed screening or are paused are left out.
    exclude_unreliable: bool = True
    # Several labels of one task make one example per step: negative if most say so.
    combine_overlaps: bool = True
    # A flagged step is context, not a target (the labeler was unsure).
    include_flagged: bool = False
    # A step the labeler wrote (phase 1's own step, phase 2's correction) is a positive
    # target; with this, it is context only and no example of its own.
    exclude_human_completions: bool = False


@dataclass
class TrainingData:
    examples: list[tuple[str, list[str], list[int | None]]]  # (problem, steps, targets)
    label_ids: list[int]
    summary: dict[str, Any]


_TIES_LISTED = 100  # ties named in the summary; the count covers them all


def _unreliable_labelers() -> set[str]:
    return {
        str(labeler)
        for labeler in AnnotatorProfile.objects.filter(
            Q(screening_passed=False) | Q(is_paused=True)
        ).values_list("labeler", flat=True)
    }


def _votes(item: LabeledTrajectory, hygiene: LabelHygiene) -> list[int | None]:
    """The item's ratings that count as targets: up to its first negative, flagged (and, if
    asked, human-written) steps excluded."""
    out: list[int | None] = []
    flags = item.flagged or [False] * len(item.ratings)
    human = item.human or [False] * len(item.ratings)
    for rating, flagged, written in zip(item.ratings, flags, human, strict=True):
        left_out = (flagged and not hygiene.include_flagged) or (
            written and hygiene.exclude_human_completions
        )
        out.append(None if left_out else rating)
        if rating == -1:
            break
    return out + [None] * (len(item.steps) - len(out))


@dataclass
class _ExampleBuilder:
    """Training examples, one task's labels at a time: what ``training_data_build`` and
    ``training_data_stream`` share. Holds the examples and counters, never the labels."""

    hygiene: LabelHygiene
    unreliable: set[str]
    # (first label id of the group, order) -> example: sorted at the end, so a stream in task
    # order gives the examples in the order of the group's first label, as a list would.
    examples: list[tuple[int, int, tuple[str, list[str], list[int | None]]]] = field(
        default_factory=list
    )
    branch_examples: list[tuple[int, int, tuple[str, list[str], list[int | None]]]] = field(
        default_factory=list
    )
    ties: list[dict[str, Any]] = field(default_factory=list)
    label_ids: list[int] = field(default_factory=list)
    problems: set[str] = field(default_factory=set)
    seen: int = 0
    tie_count: int = 0
    combined_tasks: int = 0
    flagged_steps: int = 0
    human_steps: int = 0

    def add(self, labels: Iterable[LabeledTrajectory], order: int | None = None) -> None:
        """One task's labels (or one label, when overlaps are not combined). Examples come
        out in ``order`` of their groups (default: the group's first label id)."""
        group = []
        for t in labels:
            self.seen += 1
            self.problems.add(t.problem_key)
            if t.labeler not in self.unreliable:
                group.append(t)
                self.label_ids.append(t.label_id)
        if group:
            self._group(group, min(t.label_id for t in group) if order is None else order)

    def _tie(self, task_id: int, step: int, votes: list[int]) -> None:
        self.tie_count += 1
        if len(self.ties) < _TIES_LISTED:
            self.ties.append({"task_id": task_id, "step": step, "votes": votes})

    def _group(self, group: list[LabeledTrajectory], first: int) -> None:
        hygiene = self.hygiene
        order = itertools.count()
        self.flagged_steps += sum(sum(t.flagged) for t in group)
        self.flagged_steps += sum(b.flagged for t in group for b in t.branches)
        self.human_steps += sum(sum(t.human) for t in group)
        self.human_steps += sum(b.source == "human" for t in group for b in t.branches)
        longest = max(group, key=lambda t: len(t.steps))
        # Labels of one task share a solution; combine only where their texts agree.
        agree = all(t.steps == longest.steps[: len(t.steps)] for t in group)
        if len(group) > 1 and agree:
            self.combined_tasks += 1
            per_label = [_votes(t, hygiene) for t in group]
            targets: list[int | None] = []
            for i in range(len(longest.steps)):
                step_votes = [r for v in per_label if i < len(v) and (r := v[i]) is not None]
                combined = ratings_combine(step_votes) if step_votes else None
                if step_votes and combined is None:
                    self._tie(group[0].task_id, i, step_votes)
                targets.append(combined)
            self._example(first, next(order), (longest.problem, list(longest.steps), targets))
        else:
            for t in group:
                self._example(first, next(order), (t.problem, list(t.steps), _votes(t, hygiene)))
        # Branches: one example each; the same completion after the same prefix, rated by
        # several labelers, is one example with their combined rating.
        branch_votes: dict[tuple[tuple[str, ...], str], list[int]] = {}
        for t in group:
            for branch in t.branches:
                if branch.after_error or (branch.flagged and not hygiene.include_flagged):
                    continue
                if branch.source == "human" and hygiene.exclude_human_completions:
                    continue
                branch_votes.setdefault((branch.prefix, branch.text), []).append(branch.rating)
        for (prefix, text), votes in branch_votes.items():
            rating = ratings_combine(votes)
            if rating is None:
                self._tie(group[0].task_id, len(prefix), votes)
                continue
            example = (group[0].problem, [*prefix, text], [None] * len(prefix) + [rating])
            self.branch_examples.append((first, next(order), example))

    def _example(self, first: int, order: int, example: tuple[str, list[str], list[Any]]) -> None:
        if any(r is not None for r in example[2]):
            self.examples.append((first, order, example))

    def result(self) -> TrainingData:
        hygiene = self.hygiene
        examples = [e for _, _, e in sorted(self.examples, key=lambda x: x[:2])]
        branch_examples = [e for _, _, e in sorted(self.branch_examples, key=lambda x: x[:2])]
        label_ids = sorted(self.label_ids)
        summary = {
            "label_hygiene": {
                "exclude_unreliable": hygiene.exclude_unreliable,
                "excluded_unreliable_labels": self.seen - len(label_ids),
                "combine_overlaps": hygiene.combine_overlaps,
                "combined_tasks": self.combined_tasks,
                "ties": self.tie_count,
                "tie_list": self.ties,
                "include_flagged": hygiene.include_flagged,
                "flagged_steps": self.flagged_steps,
                "exclude_human_completions": hygiene.exclude_human_completions,
                "human_steps": self.human_steps,
            },
            "trained_on_labels": {"count": len(label_ids), "sha256": label_ids_hash(label_ids)},
            "trajectory_examples": len(examples),
            "branch_examples": len(branch_examples),
        }
        return TrainingData(
            examples=examples + branch_examples, label_ids=label_ids, summary=summary
        )


def _builder(hygiene: LabelHygiene) -> _ExampleBuilder:
    unreliable = _unreliable_labelers() if hygiene.exclude_unreliable else set()
    return _ExampleBuilder(hygiene=hygiene, unreliable=unreliable)


def training_data_build(
    *, items: Sequence[LabeledTrajectory], hygiene: LabelHygiene
) -> TrainingData:
    """Training examples from labeled trajectories: each trajectory (or, for a task labeled
    several times, one combined trajectory) with its ratings as targets, plus one example per
    rated branch whose targets are that branch's step only (its prefix is context, so shared
    prefixes are not counted again). See docs/decisions/0008-prm800k-record-shapes.md."""
    builder = _builder(hygiene)
    reliable = [t for t in items if t.labeler not in builder.unreliable]
    by_task: dict[int, list[LabeledTrajectory]] = {}
    for item in reliable:
        key = item.task_id if hygiene.combine_overlaps else -item.label_id
        by_task.setdefault(key, []).append(item)
    for order, group in enumerate(by_task.values()):
        builder.add(group, order)
    builder.seen = len(items)  # unreliable labels were filtered above, but still count
    return builder.result()


def training_data_stream(
    *, hygiene: LabelHygiene, held_in_fraction: float = 0.0
) -> tuple[TrainingData, int, list[LabeledTrajectory]]:
    """``training_data_build`` over every training label (not on a reserved problem), streamed
    from the database one task at a time: memory holds the examples, not the labels. Same
    examples in the same order. The training problems in the held-in validation slice
    (``held_in_fraction``, by key as ``validation_split``) are kept out of the examples and
    returned as trajectories (a tenth of the labels at most, by default). Returns (data,
    number of training problems, validation trajectories)."""
    from selector.ml.training import split_by_problem
    from selector.services.eval_set import eval_set_reserve

    def held_in(key: str) -> bool:
        return held_in_fraction > 0 and bool(
            split_by_problem([key], eval_fraction=held_in_fraction, seed=THRESHOLD_SEED)[1]
        )

    eval_set_reserve()
    builder = _builder(hygiene)
    validation: list[LabeledTrajectory] = []
    problems: set[str] = set()
    fitted = 0
    items = labeled_trajectories(reserved=False, by_task=True)
    if hygiene.combine_overlaps:
        groups: Iterable[list[LabeledTrajectory]] = (
            list(group) for _, group in itertools.groupby(items, key=lambda t: t.task_id)
        )
    else:
        groups = ([item] for item in items)
    for group in groups:
        problems.add(group[0].problem_key)
        if held_in(group[0].problem_key):
            validation.extend(group)
        else:
            builder.add(group)
            fitted += 1
    if not fitted and validation:  # nothing left to fit: fit everything, as validation_split
        return training_data_build(items=validation, hygiene=hygiene), len(problems), []
    return builder.result(), len(problems), validation


def held_out_count() -> tuple[int, int]:
    """(labels, problems) on problems reserved for the evaluation set, streamed."""
    labels, problems = 0, set()
    for item in labeled_trajectories(reserved=True):
        labels += 1
        problems.add(item.problem_key)
    return labels, len(problems)


def label_ids_hash(label_ids: Iterable[int]) -> str:
    """sha256 of the sorted label ids, comma-separated: which labels a version saw."""
    text = ",".join(str(i) for i in sorted(label_ids))
    return hashlib.sha256(text.encode()).hexdigest()


def validation_split(
    items: Sequence[LabeledTrajectory], fraction: float
) -> tuple[list[LabeledTrajectory], list[LabeledTrajectory]]:
    """(fit, validation) of the *training* trajectories, by problem: each problem's side
    depends only on its key. With no fraction, or nothing left to fit, everything is fit."""
    from selector.ml.training import split_by_problem

    if fraction <= 0:
        return list(items), []
    _, validation_keys = split_by_problem(
        sorted({t.problem_key for t in items}), eval_fraction=fraction, seed=THRESHOLD_SEED
    )
    fit = [t for t in items if t.problem_key not in validation_keys]
    if not fit:
        return list(items), []
    return fit, [t for t in items if t.problem_key in validation_keys]


def threshold_on_validation(
    items: Sequence[LabeledTrajectory], *, checkpoint: Any
) -> dict[str, Any]:
    """The first-error threshold with the best F1 on held-in validation trajectories (those
    with a verdict, every step scored), scored by the checkpoint just trained; 0.5 when they
    cannot decide (no erroneous or no correct one)."""
    from selector.ml.metrics import threshold_choose
    from selector.ml.scoring import Scorer

    verdicts = [
        (t, next((i for i, r in enumerate(t.ratings) if r == -1), None))
        for t in items
        if t.finish_reason in (FinishReason.FOUND_ERROR, FinishReason.SOLUTION)
    ]
    solutions: list[tuple[list[float], int | None]] = []
    if verdicts:
        scorer = Scorer.load(
            checkpoint,
            device=settings.SELECTOR_DEVICE,
            token_budget=settings.SELECTOR_TOKEN_BUDGET,
            max_length=settings.SELECTOR_MAX_LENGTH,
        )
        results = scorer.score([(t.problem, t.steps) for t, _ in verdicts])
        for (t, first), r in zip(verdicts, results, strict=True):
            if len(r.step_scores) >= len(t.steps):  # past the window: undecided, left out
                solutions.append(([float(x) for x in r.step_scores], first))
    chosen = threshold_choose(solutions)
    return {
        **chosen,
        "chosen_on": "held-in validation",
        "problems": len({t.problem_key for t, _ in verdicts}),
    }


# --- Training -------------------------------------------------------------------------------

# Below this many labels a new version learns little beyond its starting point: training still
# runs (a machinery check is useful), but the form and the job's summary say so.
FEW_TRAIN_LABELS = 50


def training_warnings(train_labels: int) -> list[str]:
    """What a person starting (or reading) a train job should know about its labels."""
    if train_labels >= FEW_TRAIN_LABELS:
        return []
    return [
        f"Too few labels: {train_labels} to train on (fewer than {FEW_TRAIN_LABELS}). The new "
        "version will hardly differ from the one it starts from, and its metrics will say "
        "little; label more first, or train anyway as a check that the machinery works."
    ]


def selector_train(
    *,
    job: Job | None = None,
    base_version: SelectorVersion | None = None,
    epochs: int = 3,
    learning_rate: float = 5e-5,
    name: str | None = None,
    seed: int = 0,
    hygiene: LabelHygiene | None = None,
    class_balance: bool = False,
    threshold_fraction: float | None = None,
    progress: Progress | None = None,
) -> SelectorVersion:
    """Train a new version on the labels so far, starting from ``base_version`` (default: the
    active version; with none, a fresh PRM from the base model). The new version is ready but
    not active: evaluate and promote it explicitly. ``training_summary`` records the label
    hygiene applied and which labels it was trained on (count and sha256 of their ids).

    ``threshold_fraction`` (default ``SELECTOR_THRESHOLD_FRACTION``) of the training problems
    is a held-in validation slice: left out of the fit, scored by the new version to choose its
    first-error threshold (``training_summary["threshold"]``). The held-out set is never read.
    ``class_balance`` weights the loss by inverse class frequency."""
    from selector.ml.prm import prm_init
    from selector.ml.training import TrainExample, train

    if epochs < 1:
        raise SelectorError(f"epochs must be at least 1, got {epochs!r}")
    report = progress_for(job, progress)
    figures = [0, 0]
    checked = [0.0]

    def on_step(done: int, total: int) -> None:
        figures[:] = [done, total]
        report(done, total)

    def check() -> None:
        # Between micro-batches: the job's progress write doubles as its cancel check (it
        # raises once the job was cancelled), at most twice a second.
        now = time.monotonic()
        if now - checked[0] >= CHECK_SECONDS:
            checked[0] = now
            report(*figures)

    if base_version is None:
        active = selector_active()
        # An imported PRM scores through an adapter and cannot be fine-tuned here: by default
        # a new version then starts from the base model instead of failing.
        imported = active is not None and (active.training_summary or {}).get("init") == "import"
        base_version = None if imported else active
    if base_version is not None:
        version_require_ready(base_version)
    fraction = THRESHOLD_FRACTION if threshold_fraction is None else threshold_fraction
    data, train_problems, validation_items = training_data_stream(
        hygiene=hygiene or LabelHygiene(), held_in_fraction=fraction
    )
    held_out_labels, held_out_problems = held_out_count()
    if not data.examples:
        raise SelectorError(
            "no training labels: every label is on a held-out problem, a QC/screening task, "
            "left out by label hygiene (unreliable annotator, tie, flagged), or there are none yet"
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
                TrainExample(problem=problem, steps=steps, ratings=ratings)
                for problem, steps, ratings in data.examples
            ],
            output_dir=output_dir,
            epochs=epochs,
            learning_rate=learning_rate,
            token_budget=settings.SELECTOR_TOKEN_BUDGET // 2,
            max_length=settings.SELECTOR_MAX_LENGTH,
            seed=seed,
            device=settings.SELECTOR_DEVICE,
            grad_accumulation=settings.SELECTOR_GRAD_ACCUMULATION,
            gradient_checkpointing=settings.SELECTOR_GRADIENT_CHECKPOINTING,
            lora_rank=settings.SELECTOR_LORA_RANK,
            ensemble_heads=settings.SELECTOR_ENSEMBLE_HEADS,
            class_balance=class_balance,
            progress=on_step,
            check=check,
        )
        threshold = threshold_on_validation(validation_items, checkpoint=output_dir)
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
        **data.summary,
        "train_labels": len(data.label_ids),
        "validation_labels": len(validation_items),
        "train_problems": train_problems,
        "held_out_labels": held_out_labels,
        "held_out_problems": held_out_problems,
        "threshold": threshold,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "seed": seed,
        "warnings": training_warnings(len(data.label_ids)),
    }
    # 1 (or a summary from before ensembles): no ensemble, no uncertainty rule for this version.
    version.ensemble_heads = int(summary.get("ensemble_heads", 1))
    version.save(update_fields=["status", "training_summary", "ensemble_heads"])
    return version


def training_abandoned(*, job: Job) -> None:
    """The jobs registry's hook for a train job finished without its worker (lost, marked
    failed, cancelled): the version it was training never completes, so it is failed with the
    job's reason rather than showing "training" forever."""
    if job.version_id is None:
        return  # it never got as far as creating one
    SelectorVersion.objects.filter(pk=job.version_id, status=VersionStatus.TRAINING).update(
        status=VersionStatus.FAILED, training_summary={"error": job.error}
    )
