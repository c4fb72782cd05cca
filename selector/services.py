"""Selector workflows: base versions, scoring, 80/20 queue filling, training, evaluation,
promotion, and the jobs that run them in the background.

Heavy imports (torch, transformers, sklearn) happen inside the functions that need them, via
``selector.ml``, so importing this module from the web process stays cheap.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission
from django.db import connection, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from labeling.models import (
    FinishReason,
    Grade,
    Label,
    Lease,
    Problem,
    Solution,
    Task,
    TaskKind,
)
from selector.models import (
    Job,
    JobKind,
    JobStatus,
    SelectorVersion,
    SolutionScore,
    VersionStatus,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# The frozen held-out split: the same problems stay out of training for every version, so
# versions are compared on the same data. Changing these invalidates every stored metric.
EVAL_FRACTION: float = getattr(settings, "SELECTOR_EVAL_FRACTION", 0.1)
EVAL_SEED: int = getattr(settings, "SELECTOR_EVAL_SEED", 0)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ML_STAFF_GROUP = "ml-staff"


class SelectorError(Exception):
    """A selector operation cannot proceed; the message says why, for the admin and the CLI."""


# --- Small helpers ---------------------------------------------------------------------------


def _version_name_default(prefix: str) -> str:
    return f"{prefix}-{timezone.now():%Y%m%d-%H%M%S-%f}"


def _version_dir(name: str) -> Path:
    if not _NAME_RE.match(name):
        raise SelectorError(
            f"name {name!r}: use letters, digits, '.', '_' or '-' (it becomes a directory name)"
        )
    if SelectorVersion.objects.filter(name=name).exists():
        raise SelectorError(f"name {name!r}: a selector version with this name already exists")
    path = Path(settings.SELECTOR_CHECKPOINT_DIR) / name
    if path.exists() and any(path.iterdir()):
        raise SelectorError(f"name {name!r}: checkpoint directory {path} is not empty")
    return path


def _base_model_path(base_model: str | None) -> str:
    if base_model:
        return base_model
    if settings.SELECTOR_BASE_MODEL:
        return settings.SELECTOR_BASE_MODEL
    from selector.ml.prm import default_base_model

    return default_base_model()


def _scorer_load(version: SelectorVersion) -> Any:
    from selector.ml.scoring import Scorer

    if not version.checkpoint_path:
        raise SelectorError(f"selector {version.name} has no checkpoint")
    return Scorer.load(
        version.checkpoint_path,
        device=settings.SELECTOR_DEVICE,
        token_budget=settings.SELECTOR_TOKEN_BUDGET,
        max_length=settings.SELECTOR_MAX_LENGTH,
    )


def _require_ready(version: SelectorVersion) -> None:
    if version.status != VersionStatus.READY:
        raise SelectorError(
            f"selector {version.name} is {version.get_status_display().lower()}, not ready"
        )


def selector_active() -> SelectorVersion | None:
    return SelectorVersion.objects.filter(is_active=True).first()


# --- Permissions ----------------------------------------------------------------------------


def selector_permissions_grant() -> Group:
    """Create (or update) the ``ml-staff`` group: run the selector loop, read-only on labeling
    data. Members also need ``is_staff`` to enter the admin."""
    group, _ = Group.objects.get_or_create(name=ML_STAFF_GROUP)
    # Run the loop (view/change versions, scores, jobs; start jobs), never delete history.
    codenames = [
        f"{action}_{model}"
        for model in ("selectorversion", "solutionscore", "job")
        for action in ("view", "change")
    ] + ["add_job"]
    selector_perms = Permission.objects.filter(
        content_type__app_label="selector", codename__in=codenames
    )
    labeling_reads = Permission.objects.filter(
        content_type__app_label="labeling", codename__startswith="view_"
    )
    perms = selector_perms | labeling_reads
    group.permissions.add(*perms)
    return group


# --- Base version and scoring ---------------------------------------------------------------


def selector_create_base(
    *, base_model: str | None = None, name: str | None = None, activate: bool | None = None
) -> SelectorVersion:
    """A fresh, untrained PRM from a local Hugging Face model directory.

    With ``activate=None`` the version becomes active only when no version is active yet, so
    the pool can be scored and the first queue filled before any label exists.
    """
    from selector.ml.prm import prm_init

    base = _base_model_path(base_model)
    if not Path(base).is_dir():
        raise SelectorError(f"base_model {base!r} is not a local model directory")
    name = name or _version_name_default("base")
    output_dir = _version_dir(name)
    prm_init(base_model=base, output_dir=output_dir)
    try:
        with transaction.atomic():
            make_active = (
                activate
                if activate is not None
                else not SelectorVersion.objects.select_for_update().filter(is_active=True).exists()
            )
            if make_active:
                SelectorVersion.objects.filter(is_active=True).update(is_active=False)
            return SelectorVersion.objects.create(
                name=name,
                base_model=base,
                checkpoint_path=str(output_dir),
                status=VersionStatus.READY,
                is_active=make_active,
                promoted_at=timezone.now() if make_active else None,
                training_summary={"init": "base", "base_model": base},
            )
    except Exception:
        shutil.rmtree(output_dir, ignore_errors=True)
        raise


def candidates_score(
    *,
    version: SelectorVersion,
    job: Job | None = None,
    batch: int = 1024,
    solution_ids: Iterable[int] | None = None,
    progress: Progress | None = None,
) -> int:
    """Score every solution ``version`` has not scored yet; returns how many were scored.

    Works in chunks of ``batch`` solutions in id order, so an interrupted run resumes where it
    stopped (the NOT EXISTS filter skips what is stored) and memory stays flat.
    """
    _require_ready(version)
    report = _progress_for(job, progress)
    pending = Solution.objects.filter(
        ~Exists(SolutionScore.objects.filter(version=version, solution=OuterRef("pk")))
    )
    if solution_ids is not None:
        pending = pending.filter(pk__in=list(solution_ids))
    total = pending.count()
    report(0, total)
    if not total:
        return 0
    scorer = _scorer_load(version)
    done = 0
    last_id = 0
    while True:
        chunk = list(
            pending.filter(pk__gt=last_id)
            .order_by("pk")
            .select_related("problem")
            .only("id", "steps", "problem__problem")[:batch]
        )
        if not chunk:
            break
        offset = done
        results = scorer.score(
            [(s.problem.problem, list(s.steps)) for s in chunk],
            progress=lambda d, _t, offset=offset: report(offset + d, total),
        )
        SolutionScore.objects.bulk_create(
            [
                SolutionScore(
                    solution_id=s.pk,
                    version=version,
                    # float rounding can push a product of probabilities a hair past 1
                    score=min(1.0, max(0.0, float(r.score))),
                    step_scores=[float(x) for x in r.step_scores],
                    truncated_steps=r.truncated_steps,
                )
                for s, r in zip(chunk, results, strict=True)
            ],
            ignore_conflicts=True,  # a concurrent run may have scored some of them
            batch_size=1000,
        )
        done += len(chunk)
        last_id = chunk[-1].pk
        report(done, total)
    return done


# --- 80/20 queue filling --------------------------------------------------------------------


@dataclass
class FillReport:
    generation: int
    version_id: int | None
    created: int = 0
    wrong: int = 0
    problems: int = 0
    seconds: float = 0.0

    @property
    def wrong_share(self) -> float | None:
        return self.wrong / self.created if self.created else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "wrong_share": self.wrong_share}


def _generation_current() -> int | None:
    return Task.objects.filter(kind=TaskKind.NORMAL, generation__isnull=False).aggregate(
        g=Max("generation")
    )["g"]


def _wrong_target(k: int, wrong_fraction: float) -> int:
    """round(k * fraction), halves up (Python's round() would send 2.5 to 2)."""
    return int(k * wrong_fraction + 0.5)


def _fill_sql(*, per_problem: int, wrong_fraction: float) -> str:
    """The whole 80/20 selection as one INSERT … SELECT (SQLite ≥ 3.25 and PostgreSQL).

    ``targets`` is a tiny literal table k → round-half-up(k * fraction), computed in Python so
    both databases round identically (their ROUND/CAST rules differ).
    """
    task = Task._meta.db_table
    solution = Solution._meta.db_table
    score = SolutionScore._meta.db_table
    targets = ", ".join(
        f"({k}, {_wrong_target(k, wrong_fraction)})" for k in range(0, per_problem + 1)
    )
    return f"""
WITH targets(k, w) AS (VALUES {targets}),
queued AS (
    SELECT s.problem_id, COUNT(*) AS n
    FROM {task} t JOIN {solution} s ON s.id = t.solution_id
    WHERE t.kind = %s AND t.generation = %s
    GROUP BY s.problem_id
),
cand AS (
    SELECT s.id, s.problem_id, sc.score,
           CASE WHEN s.grade = %s THEN 1 ELSE 0 END AS is_wrong
    FROM {solution} s
    JOIN {score} sc ON sc.solution_id = s.id AND sc.version_id = %s
    WHERE NOT EXISTS (SELECT 1 FROM {task} t WHERE t.solution_id = s.id)
),
ranked AS (
    -- One sort per problem by (score desc, id), one pass over it: the position and the number
    -- of wrong answers up to here decide both parts of the rule (same window, so one node).
    SELECT c.id, c.problem_id, c.score, c.is_wrong,
           COUNT(*) OVER w_upto AS pos,
           SUM(c.is_wrong) OVER w_upto AS wrong_upto
    FROM cand c
    WINDOW w_upto AS (PARTITION BY c.problem_id ORDER BY c.score DESC, c.id
                      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
shortlist AS (
    -- Whatever a problem's budget, only its top-w_max wrong answers and its first K + w_max
    -- candidates can be chosen: everything else is dropped before the per-problem budgets.
    SELECT r.id, r.problem_id, r.score, r.is_wrong, r.pos, r.wrong_upto
    FROM ranked r
    WHERE (r.is_wrong = 1 AND r.wrong_upto <= %s) OR r.pos <= %s
),
budgeted AS (
    SELECT l.id, l.problem_id, l.score, tg.k,
           CASE WHEN l.is_wrong = 1 AND l.wrong_upto <= tg.w THEN 1 ELSE 0 END AS pick_wrong,
           -- rank among the candidates the wrong-answer part did not take
           l.pos - CASE WHEN l.wrong_upto < tg.w THEN l.wrong_upto ELSE tg.w END AS rest_rank
    FROM shortlist l
    LEFT JOIN queued q ON q.problem_id = l.problem_id
    JOIN targets tg ON tg.k = CASE WHEN %s - COALESCE(q.n, 0) > 0
                                   THEN %s - COALESCE(q.n, 0) ELSE 0 END
    WHERE tg.k > 0
),
decided AS (
    SELECT b.id, b.score, b.pick_wrong, b.rest_rank,
           b.k - SUM(b.pick_wrong) OVER (PARTITION BY b.problem_id) AS rest_budget
    FROM budgeted b
    WHERE b.pick_wrong = 1 OR b.rest_rank <= b.k
)
INSERT INTO {task} (solution_id, kind, generation, priority, queued_score, required_labels,
                    label_count, lease_count, gold_label_id, created_at)
SELECT d.id, %s, %s, d.score, d.score, %s, 0, 0, NULL, %s
FROM decided d
WHERE d.pick_wrong = 1 OR d.rest_rank <= d.rest_budget
"""


def queue_fill(
    *,
    per_problem: int | None = None,
    wrong_fraction: float | None = None,
    generation: int | None = None,
    version: SelectorVersion | None = None,
    required_labels: int = 1,
    job: Job | None = None,
) -> FillReport:
    """Queue, per problem, the K candidates the paper's 80/20 rule picks (brief §6).

    Candidates are solutions that ``version`` (default: the active one) has scored and that have
    no task of any kind yet (so nothing labeled, queued, or used as a QC/screening item comes
    back). A problem's budget is K minus its normal tasks already in ``generation``; of that
    budget k, round(k * wrong_fraction) go to its highest-scoring candidates graded
    *incorrect*, the rest to the highest-scoring remaining candidates of any grade. Ungraded and
    ungradable answers are neither wrong nor right: they can only enter through the "rest"
    part. Too few wrong answers leave more room for the rest. Ties: score desc, then id asc.

    ``generation=None`` starts a new generation (the highest so far + 1). Tasks get
    ``priority = queued_score = score``. Runs as one set-based INSERT … SELECT.
    """
    k = settings.SELECTOR_PER_PROBLEM if per_problem is None else per_problem
    fraction = settings.SELECTOR_WRONG_FRACTION if wrong_fraction is None else wrong_fraction
    if not isinstance(k, int) or k < 0 or k > 1000:
        raise SelectorError(f"per_problem must be an integer in 0..1000, got {k!r}")
    if not 0.0 <= fraction <= 1.0:
        raise SelectorError(f"wrong_fraction must be within 0..1, got {fraction!r}")
    if required_labels < 1:
        raise SelectorError(f"required_labels must be at least 1, got {required_labels!r}")
    version = version or selector_active()
    if version is None:
        raise SelectorError("no active selector version: create or promote one first")
    started = time.perf_counter()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Two fills at once would both see the same candidates as unqueued.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('stepwise.queue_fill'))")
                # The selection sorts every candidate once; keep that sort in memory.
                cursor.execute("SET LOCAL work_mem = '256MB'")
        if generation is None:
            generation = (_generation_current() or 0) + 1
        report = FillReport(generation=generation, version_id=version.pk)
        if k > 0:
            now = timezone.now()
            params: list[Any] = [
                TaskKind.NORMAL.value,
                generation,
                Grade.INCORRECT.value,
                version.pk,
                _wrong_target(k, fraction),
                k + _wrong_target(k, fraction),
                k,
                k,
                TaskKind.NORMAL.value,
                generation,
                required_labels,
                connection.ops.adapt_datetimefield_value(now),
            ]
            with connection.cursor() as cursor:
                cursor.execute(_fill_sql(per_problem=k, wrong_fraction=fraction), params)
            # This run's rows are the ones stamped with its `now`.
            counts = Task.objects.filter(
                kind=TaskKind.NORMAL, generation=generation, created_at=now
            ).aggregate(
                created=Count("id"),
                wrong=Count("id", filter=Q(solution__grade=Grade.INCORRECT)),
                problems=Count("solution__problem_id", distinct=True),
            )
            report.created = counts["created"]
            report.wrong = counts["wrong"]
            report.problems = counts["problems"]
    report.seconds = time.perf_counter() - started
    if job is not None:
        _progress_for(job, None)(report.created, report.created)
    logger.info("queue_fill: %s", report.as_dict())
    return report


def queue_open_slots() -> int:
    """Open labeling slots across normal tasks (required minus done minus leased)."""
    open_tasks = Task.objects.filter(
        kind=TaskKind.NORMAL,
        required_labels__gt=F("label_count") + F("lease_count"),
    )
    slots = open_tasks.aggregate(n=Sum(F("required_labels") - F("label_count") - F("lease_count")))[
        "n"
    ]
    return int(slots or 0)


def queue_top_up() -> FillReport | None:
    """Low-water mark: refill when open slots drop below ``SELECTOR_LOW_WATER``.

    Fills the current generation first (respecting each problem's budget); if every problem is
    at budget there, it opens the next generation with the same selector so work never runs dry.
    """
    if queue_open_slots() >= settings.SELECTOR_LOW_WATER:
        return None
    if selector_active() is None:
        logger.info("queue_top_up: no active selector version")
        return None
    current = _generation_current()
    report = queue_fill(generation=current or 1)
    if report.created == 0 and current is not None:
        report = queue_fill(generation=current + 1)
    return report


# --- Training data --------------------------------------------------------------------------


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


def _held_out_keys(keys: Iterable[str]) -> set[str]:
    from selector.ml.training import split_by_problem

    _, held_out = split_by_problem(sorted(set(keys)), eval_fraction=EVAL_FRACTION, seed=EVAL_SEED)
    return held_out


def trajectories_split() -> tuple[list[LabeledTrajectory], list[LabeledTrajectory]]:
    """(train, held_out), split by problem on a hash of its unique_id: a frozen held-out set."""
    items = list(labeled_trajectories())
    held_out = _held_out_keys(t.problem_key for t in items)
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
    report = _progress_for(job, progress)
    base_version = base_version or selector_active()
    if base_version is not None:
        _require_ready(base_version)
    train_items, held_out = trajectories_split()
    if not train_items:
        raise SelectorError(
            "no training labels: every label is on a held-out problem, a QC/screening task, "
            "or there are none yet"
        )
    name = name or _version_name_default("v")
    output_dir = _version_dir(name)
    base_model = base_version.base_model if base_version else _base_model_path(None)
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


# --- Evaluation -----------------------------------------------------------------------------


def _answer_key(answer: str, grade: str) -> str:
    """Majority-vote key: answers graded correct are all equivalent to the ground truth (so to
    each other); others are compared after light normalization."""
    if grade == Grade.CORRECT:
        return "\x00correct"
    text = re.sub(r"\\[,;!: ]|\\left|\\right|\$|\s+", "", answer or "")
    return text.removeprefix("\\boxed{").removesuffix("}") if text.startswith("\\boxed{") else text


def _roc_points(scores: Sequence[float], ratings: Sequence[int], limit: int = 200) -> dict:
    from sklearn.metrics import roc_curve

    y = [1 if r == -1 else 0 for r in ratings]
    if len(set(y)) < 2:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, [1.0 - s for s in scores])
    step = max(1, len(fpr) // limit)
    idx = sorted(set(range(0, len(fpr), step)) | {len(fpr) - 1})
    return {
        "fpr": [round(float(fpr[i]), 5) for i in idx],
        "tpr": [round(float(tpr[i]), 5) for i in idx],
    }


def _evaluate_one(
    version: SelectorVersion,
    held_out: Sequence[LabeledTrajectory],
    bon_solutions: dict[int, list[Solution]],
    report: Progress,
) -> dict[str, Any]:
    from selector.ml.metrics import best_of_n, first_error_metrics, step_metrics

    scorer = _scorer_load(version)
    scored = scorer.score([(t.problem, t.steps) for t in held_out]) if held_out else []
    flat_scores: list[float] = []
    flat_ratings: list[int] = []
    first_errors: list[tuple[list[float], int | None]] = []
    for item, result in zip(held_out, scored, strict=True):
        step_scores = list(result.step_scores)
        for s, r in zip(step_scores, item.ratings, strict=False):
            if r is None:
                continue
            flat_scores.append(float(s))
            flat_ratings.append(int(r))
            if r == -1:
                break  # later steps carry no target, as in training
        first_error = next((i for i, r in enumerate(item.ratings) if r == -1), None)
        if result.truncated_steps:
            continue  # the error may sit in the cut part: no fair first-error call
        if first_error is not None or item.finish_reason == FinishReason.SOLUTION:
            first_errors.append((step_scores, first_error))
    # Best-of-N over problems with several graded candidates, scored by this version.
    all_ids = [s.pk for sols in bon_solutions.values() for s in sols]
    candidates_score(version=version, solution_ids=all_ids)
    scores = dict(
        SolutionScore.objects.filter(version=version, solution_id__in=all_ids).values_list(
            "solution_id", "score"
        )
    )
    pools = [
        [(scores[s.pk], _answer_key(s.answer, s.grade), s.grade == Grade.CORRECT) for s in sols]
        for sols in bon_solutions.values()
    ]
    pools = [p for p in pools if len(p) >= 2]
    return {
        "version_id": version.pk,
        "version": version.name,
        "step": step_metrics(flat_scores, flat_ratings),
        "first_error": first_error_metrics(first_errors),
        "best_of_n": best_of_n(pools) if pools else None,
        "best_of_n_problems": len(pools),
        "roc": _roc_points(flat_scores, flat_ratings),
    }


def selector_evaluate(
    *, version: SelectorVersion, job: Job | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Metrics on the frozen held-out set, stored in ``version.metrics``, with the active
    version evaluated on the same data under ``compared_with`` (retraining can be unstable:
    compare before promoting)."""
    _require_ready(version)
    report = _progress_for(job, progress)
    _, held_out = trajectories_split()
    graded = Solution.objects.filter(grade__in=[Grade.CORRECT, Grade.INCORRECT]).only(
        "id", "answer", "grade", "problem_id"
    )
    problem_keys = dict(
        Problem.objects.filter(pk__in=graded.values("problem_id").distinct()).values_list(
            "id", "unique_id"
        )
    )
    held_keys = _held_out_keys(problem_keys.values())
    bon: dict[int, list[Solution]] = {}
    for s in graded.filter(problem_id__in=[p for p, k in problem_keys.items() if k in held_keys]):
        bon.setdefault(s.problem_id, []).append(s)
    bon = {p: sols for p, sols in bon.items() if len(sols) >= 2}
    active = selector_active()
    compare = active if active is not None and active.pk != version.pk else None
    report(0, 2 if compare else 1)
    metrics: dict[str, Any] = {
        "evaluated_at": timezone.now().isoformat(),
        "held_out": {
            "labels": len(held_out),
            "problems": len({t.problem_key for t in held_out}),
            "best_of_n_problems": len(bon),
            "eval_fraction": EVAL_FRACTION,
        },
        **_evaluate_one(version, held_out, bon, report),
    }
    report(1, 2 if compare else 1)
    if compare is not None:
        metrics["compared_with"] = _evaluate_one(compare, held_out, bon, report)
        report(2, 2)
    version.metrics = _jsonable(metrics)
    version.save(update_fields=["metrics"])
    return version.metrics


# --- Promotion ------------------------------------------------------------------------------


def selector_promote(
    *, version: SelectorVersion, job: Job | None = None, progress: Progress | None = None
) -> dict[str, int]:
    """Make ``version`` the active selector, score the pool with it, and re-prioritise queued
    tasks nobody has touched (no label, no lease) by the new scores. ``queued_score`` keeps
    the score at queue time (PRM800K's pre_generated_verifier_score); only priority moves."""
    with transaction.atomic():
        version = SelectorVersion.objects.select_for_update().get(pk=version.pk)
        _require_ready(version)
        SelectorVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(
            is_active=False
        )
        version.is_active = True
        version.promoted_at = timezone.now()
        version.save(update_fields=["is_active", "promoted_at"])
    scored = candidates_score(version=version, job=job, progress=progress)
    new_score = SolutionScore.objects.filter(version=version, solution=OuterRef("solution"))
    with transaction.atomic():
        reprioritized = (
            Task.objects.filter(kind=TaskKind.NORMAL, label_count=0, lease_count=0)
            .filter(Exists(new_score))
            .filter(~Exists(Label.objects.filter(task=OuterRef("pk"))))
            .filter(~Exists(Lease.objects.filter(task=OuterRef("pk"))))
            .update(priority=Subquery(new_score.values("score")[:1]))
        )
    return {"scored": scored, "reprioritized": reprioritized}


# --- Jobs -----------------------------------------------------------------------------------


class JobProgress:
    """A progress callback that writes to the Job row at most every ``interval`` seconds (and
    always on completion), so a fast loop doesn't turn into a write storm."""

    def __init__(
        self, job: Job | None, *, interval: float = 0.5, echo: Progress | None = None
    ) -> None:
        self.job = job
        self.interval = interval
        self.echo = echo
        self._last: float | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.echo is not None:
            self.echo(done, total)
        if self.job is None:
            return
        now = time.monotonic()
        throttled = self._last is not None and now - self._last < self.interval
        if throttled and done < total and total == self.job.progress_total:
            return
        self._last = now
        self.job.progress_done = max(0, int(done))
        self.job.progress_total = max(0, int(total))
        self.job.save(update_fields=["progress_done", "progress_total"])


def _progress_for(job: Job | None, progress: Progress | None) -> Progress:
    if isinstance(progress, JobProgress):
        return progress
    if job is None:
        return progress or (lambda _d, _t: None)
    return JobProgress(job, echo=progress)


_TASK_NAMES = {
    JobKind.TRAIN: "selector.train",
    JobKind.EVALUATE: "selector.evaluate",
    JobKind.PROMOTE: "selector.promote",
    JobKind.SCORE: "selector.score_candidates",
    JobKind.FILL: "selector.fill_queue",
}
_NEEDS_VERSION = {JobKind.EVALUATE, JobKind.PROMOTE}


def job_start(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    version: SelectorVersion | None = None,
    enqueue: bool = True,
) -> Job:
    """Record a Job and enqueue its Celery task once the row is committed."""
    if kind not in _TASK_NAMES:
        raise SelectorError(f"kind {kind!r}: not a background selector job")
    if kind in _NEEDS_VERSION and version is None:
        raise SelectorError(f"kind {kind!r}: needs a selector version")
    if version is not None and kind in _NEEDS_VERSION | {JobKind.SCORE}:
        _require_ready(version)
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            params=params or {},
            version=version,
            created_by_id=user.pk if user is not None and user.is_authenticated else None,
        )
        if enqueue:
            task_name = _TASK_NAMES[JobKind(kind)]
            transaction.on_commit(lambda: _enqueue(task_name, job.pk))
    return job


def _enqueue(task_name: str, job_id: int) -> None:
    from selector import tasks

    task = {
        "selector.train": tasks.train,
        "selector.evaluate": tasks.evaluate,
        "selector.promote": tasks.promote,
        "selector.score_candidates": tasks.score_candidates,
        "selector.fill_queue": tasks.fill_queue,
    }[task_name]
    task.delay(job_id)


def _job_run_kind(job: Job, progress: JobProgress) -> dict[str, Any]:
    params = dict(job.params or {})
    if job.kind == JobKind.TRAIN and params.get("base"):
        version = selector_create_base(name=params.get("name") or None)
        job.version = version
        job.save(update_fields=["version"])
        return {"version_id": version.pk, "version": version.name, "active": version.is_active}
    if job.kind == JobKind.TRAIN:
        base = (
            SelectorVersion.objects.get(pk=params["base_version_id"])
            if params.get("base_version_id")
            else None
        )
        version = selector_train(
            job=job,
            base_version=base,
            epochs=int(params.get("epochs", 3)),
            learning_rate=float(params.get("learning_rate", 5e-5)),
            name=params.get("name") or None,
            progress=progress,
        )
        return {"version_id": version.pk, "version": version.name, **version.training_summary}
    if job.kind == JobKind.EVALUATE:
        assert job.version is not None
        return selector_evaluate(version=job.version, progress=progress)
    if job.kind == JobKind.PROMOTE:
        assert job.version is not None
        return selector_promote(version=job.version, progress=progress)
    if job.kind == JobKind.SCORE:
        scoring = job.version or selector_active()
        if scoring is None:
            raise SelectorError("no active selector version to score with")
        if job.version is None:
            job.version = scoring
            job.save(update_fields=["version"])
        return {"scored": candidates_score(version=scoring, progress=progress)}
    if job.kind == JobKind.FILL:
        report = queue_fill(
            per_problem=params.get("per_problem"),
            wrong_fraction=params.get("wrong_fraction"),
            generation=params.get("generation"),
            version=job.version,
        )
        progress(report.created, report.created)
        return report.as_dict()
    raise SelectorError(f"kind {job.kind!r}: not a background selector job")


def job_execute(*, job_id: int, echo: Progress | None = None) -> Job:
    """Run a Job in this process: queued/running → succeeded or failed (with the error).

    Idempotent for ``acks_late`` redelivery: a job that already succeeded is not redone.
    Never raises for a failure of the work itself; the Job row carries it.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status == JobStatus.SUCCEEDED:
            return job
        job.status = JobStatus.RUNNING
        job.started_at = timezone.now()
        job.error = ""
        job.save(update_fields=["status", "started_at", "error"])
    job.refresh_from_db()
    progress = JobProgress(job, echo=echo)
    try:
        result = _job_run_kind(job, progress)
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        job.status = JobStatus.FAILED
        job.error = f"{type(exc).__name__}: {exc}"
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        return job
    job.status = JobStatus.SUCCEEDED
    job.result = _jsonable(result)
    job.finished_at = timezone.now()
    if job.progress_total == 0:
        job.progress_total = job.progress_done = 1
    job.progress_done = job.progress_total
    job.save(update_fields=["status", "result", "finished_at", "progress_done", "progress_total"])
    return job


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars from metrics, Paths) for a JSONField."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


__all__ = [
    "FillReport",
    "JobProgress",
    "LabeledTrajectory",
    "SelectorError",
    "candidates_score",
    "job_execute",
    "job_start",
    "queue_fill",
    "queue_open_slots",
    "queue_top_up",
    "selector_active",
    "selector_create_base",
    "selector_evaluate",
    "selector_permissions_grant",
    "selector_promote",
    "selector_train",
    "trajectories_split",
]
