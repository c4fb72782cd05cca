"""Selector workflows, one module each: versions, scoring, queue_fill, training, evaluation,
promotion, and the jobs that run them in the background.

Heavy imports (torch, transformers, sklearn) happen inside the functions that need them, via
``selector.ml``, so importing this package from the web process stays cheap.
"""

from jobs.services import job_cancel
from selector.services.benchmark import BenchmarkError, benchmark_evaluate, benchmark_upload
from selector.services.common import JobCancelled, JobProgress, Progress, SelectorError
from selector.services.eval_set import (
    eval_queue_fill,
    eval_set_current,
    eval_set_freeze,
    eval_set_reserve,
)
from selector.services.evaluation import selector_evaluate
from selector.services.job_runs import job_execute
from selector.services.jobs import job_start
from selector.services.promotion import selector_promote
from selector.services.queue_fill import FillReport, queue_fill, queue_open_slots, queue_top_up
from selector.services.score_chunks import score_chunk_execute, score_job_run
from selector.services.scoring import candidates_score
from selector.services.training import (
    EVAL_FRACTION,
    EVAL_SEED,
    LabeledTrajectory,
    LabelHygiene,
    labeled_trajectories,
    selector_train,
    training_data_build,
    training_data_stream,
    trajectories_split,
)
from selector.services.versions import (
    selector_active,
    selector_create_base,
    selector_import,
    selector_permissions_grant,
)

__all__ = [
    "EVAL_FRACTION",
    "EVAL_SEED",
    "BenchmarkError",
    "FillReport",
    "JobCancelled",
    "JobProgress",
    "LabelHygiene",
    "LabeledTrajectory",
    "Progress",
    "SelectorError",
    "benchmark_evaluate",
    "benchmark_upload",
    "candidates_score",
    "eval_queue_fill",
    "eval_set_current",
    "eval_set_freeze",
    "eval_set_reserve",
    "job_cancel",
    "job_execute",
    "job_start",
    "labeled_trajectories",
    "queue_fill",
    "queue_open_slots",
    "queue_top_up",
    "score_chunk_execute",
    "score_job_run",
    "selector_active",
    "selector_create_base",
    "selector_evaluate",
    "selector_import",
    "selector_permissions_grant",
    "selector_promote",
    "selector_train",
    "training_data_build",
    "training_data_stream",
    "trajectories_split",
]
