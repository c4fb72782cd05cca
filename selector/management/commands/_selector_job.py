"""Shared plumbing for the selector commands: start a Job, then run it here (``--sync``) or
enqueue it for the ``ml`` worker (optionally following its progress with ``--wait``)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from jobs.models import Job, JobStatus
from jobs.params import JobParamsInvalid
from jobs.services import JobError
from selector import services
from selector.models import SelectorVersion


class SelectorJobCommand(BaseCommand):
    kind: str = ""

    def add_job_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sync", action="store_true", help="run in this process instead of on a worker"
        )
        parser.add_argument(
            "--wait", action="store_true", help="after enqueueing, follow the job until it ends"
        )

    def version_arg(self, value: str | None, *, required: bool) -> SelectorVersion | None:
        if value is None:
            active = services.selector_active()
            if required and active is None:
                raise CommandError("no active selector version; pass --selector NAME")
            return active
        found = SelectorVersion.objects.filter(name=value).first()
        if found is None and value.isdigit():
            found = SelectorVersion.objects.filter(pk=int(value)).first()
        if found is None:
            raise CommandError(f"--selector {value!r}: no selector version with that name or id")
        return found

    def run_job(
        self,
        options: dict[str, Any],
        *,
        params: dict[str, Any],
        version: SelectorVersion | None = None,
    ) -> Job:
        try:
            job = services.job_start(
                kind=self.kind, params=params, version=version, enqueue=not options["sync"]
            )
        except (services.SelectorError, JobParamsInvalid, JobError) as exc:
            raise CommandError(str(exc)) from exc
        bar = tqdm(total=0, unit="it", desc=str(job), disable=options.get("verbosity", 1) == 0)

        def echo(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.n = done
            bar.refresh()

        try:
            if options["sync"]:
                job = services.job_execute(job_id=job.pk, echo=echo)
            elif options["wait"]:
                while job.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                    time.sleep(1.0)
                    job.refresh_from_db()
                    echo(job.progress_done, job.progress_total)
            else:
                bar.close()
                self.stdout.write(f"queued {job} (id {job.pk}); follow it in the admin")
                return job
        finally:
            bar.close()
        if job.status == JobStatus.FAILED:
            raise CommandError(f"{job} failed: {job.error}")
        self.stdout.write(self.style.SUCCESS(f"{job} succeeded: {self.summary(job)}"))
        return job

    def summary(self, job: Job) -> str:
        return ", ".join(
            f"{k}={v}" for k, v in (job.result or {}).items() if not isinstance(v, dict | list)
        )
