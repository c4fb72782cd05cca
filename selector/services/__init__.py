"""Selector workflows, one module each: versions, scoring, queue_fill, training, evaluation,
promotion, and the jobs that run them in the background.

Heavy imports (torch, transformers, sklearn) happen inside the functions that need them, via
``selector.ml``, so importing this package from the web process stays cheap.
"""

from selector.services.common import JobProgress, Progress, SelectorError
from selector.services.evaluation import selector_evaluate
from selector.services.jobs import job_execute, job_start
from selector.services.promotion import selector_promote
from selector.services.queue_fill import FillReport, queue_fill, queue_open_slots, queue_top_up
from selector.services.scoring import candidates_score
from selector.services.training import (
    EVAL_FRACTION,
    EVAL_SEED,
    LabeledTrajectory,
    labeled_trajectories,
    selector_train,
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
    "FillReport",
    "JobProgress",
    "LabeledTrajectory",
    "Progress",
    "SelectorError",
    "candidates_score",
    "job_execute",
    "job_start",
    "labeled_trajectories",
    "queue_fill",
    "queue_open_slots",
    "queue_top_up",
    "selector_active",
    "selector_create_base",
    "selector_evaluate",
    "selector_import",
    "selector_permissions_grant",
    "selector_promote",
    "selector_train",
    "trajectories_split",
]
