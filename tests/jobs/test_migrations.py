"""Moving Job into the jobs app keeps its table, its rows and the permissions granted on it."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from jobs.models import Job, JobStatus


def migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor


@pytest.mark.django_db(transaction=True)
def test_job_rows_and_permissions_survive_the_move_from_selector():
    migrate([("jobs", None)])  # back to when Job lived in selector
    old = MigrationExecutor(connection).loader.project_state([("selector", "0001_initial")]).apps
    OldJob = old.get_model("selector", "Job")
    row = OldJob.objects.create(
        kind="score", status="running", progress_done=4, progress_total=3136
    )
    # Migrating back handed the content type (and its permissions) back to selector, as a
    # database from before the move has it.
    selector_job = ContentType.objects.get(app_label="selector", model="job")
    assert not ContentType.objects.filter(app_label="jobs").exists()
    add_job = Permission.objects.get(content_type=selector_job, codename="add_job")
    staff = Group.objects.create(name="ml-staff")
    staff.permissions.add(add_job)

    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes())

    job = Job.objects.get(pk=row.pk)
    assert (job.kind, job.status, job.progress_done, job.progress_total) == (
        "score",
        JobStatus.RUNNING,
        4,
        3136,
    )
    assert (job.heartbeat_at, job.worker, job.attempts) == (None, "", 0)
    assert Job._meta.db_table == "selector_job"
    selector_job.refresh_from_db()
    assert selector_job.app_label == "jobs"
    assert list(staff.permissions.values_list("content_type__app_label", "codename")) == [
        ("jobs", "add_job")
    ]
