"""One map from job kind to task; each task exists and lands on the right queue; the jobs app
stands alone."""

import ast
from pathlib import Path

from django.conf import settings
from django.utils.module_loading import import_string

from jobs.models import JobKind
from jobs.registry import JOB_TASKS
from stepwise.celery import app

ROOT = Path(__file__).resolve().parents[2]


def queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


def test_every_kind_has_a_registered_task():
    app.loader.import_default_modules()
    assert set(JOB_TASKS) == set(JobKind)
    for kind, entry in JOB_TASKS.items():
        assert entry.task in app.tasks, (kind, entry.task)


def test_every_abandon_hook_imports():
    hooks = {kind: entry.on_abandon for kind, entry in JOB_TASKS.items() if entry.on_abandon}
    assert JobKind.TRAIN in hooks
    for hook in hooks.values():
        assert callable(import_string(hook)), hook


def test_model_work_goes_to_ml_and_queue_top_up_and_fill_to_default():
    assert {name: queue_of(name) for name in sorted(t.task for t in JOB_TASKS.values())} == {
        "labeling.export_job_run": "default",
        "labeling.import_job_run": "default",
        "selector.benchmark_evaluate": "ml",
        "selector.candidates_generate": "ml",
        "selector.candidates_score": "ml",
        "selector.queue_fill": "default",
        "selector.selector_evaluate": "ml",
        "selector.selector_import": "ml",
        "selector.selector_promote": "ml",
        "selector.selector_train": "ml",
        "selector.simulation_execute": "ml",
    }
    assert queue_of("selector.queue_top_up") == "default"
    assert queue_of("jobs.jobs_reap") == "default"


def test_beat_runs_the_reaper_often_and_its_threshold_spans_many_heartbeats():
    reap = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "jobs.jobs_reap"]
    assert len(reap) == 1 and reap[0]["schedule"] <= 120
    assert settings.JOBS_LOST_AFTER_SECONDS >= 5 * settings.JOBS_HEARTBEAT_SECONDS
    # Redis must never hand a still-running task to a second worker: its visibility timeout
    # outlasts the longest hard time limit of any task.
    if "visibility_timeout" in settings.CELERY_BROKER_TRANSPORT_OPTIONS:
        app.loader.import_default_modules()
        longest = max((t.time_limit or 0) for t in app.tasks.values())
        assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > longest


def test_the_jobs_app_imports_no_other_app_of_the_project():
    for path in (ROOT / "jobs").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] not in {"selector", "labeling"}, (path, name)
