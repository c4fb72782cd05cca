"""Queue candidate solutions for labeling (the same service as the admin action)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import Solution, Task, TaskKind
from labeling.queries import generation_current, queue_scores
from labeling.services.queue import tasks_enqueue


class Command(BaseCommand):
    help = (
        "Queue candidate solutions as labeling tasks. Already queued ones (same kind and "
        "generation) are left alone; priority comes from the active selector's score."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--all-unqueued",
            action="store_true",
            help="every solution that has no task of this kind yet",
        )
        which.add_argument("--solution-ids", nargs="+", type=int, metavar="ID")
        parser.add_argument(
            "--generation",
            type=int,
            default=None,
            help="active-learning round (default: the latest one queued so far, or 1)",
        )
        parser.add_argument("--priority-from", choices=["score", "zero"], default="score")
        parser.add_argument("--overlap", type=int, default=1, help="labels wanted per task")
        parser.add_argument("--kind", choices=TaskKind.values, default=TaskKind.NORMAL)

    def handle(self, *args: Any, **options: Any) -> None:
        kind = options["kind"]
        if options["all_unqueued"]:
            queued = Task.objects.filter(kind=kind).values("solution_id")
            solution_ids = list(
                Solution.objects.exclude(pk__in=queued).values_list("pk", flat=True)
            )
        else:
            solution_ids = options["solution_ids"]
        generation = options["generation"]
        if generation is None:
            generation = generation_current()
        try:
            created = tasks_enqueue(
                solution_ids=solution_ids,
                generation=generation,
                overlap=options["overlap"],
                kind=kind,
                priority_from=options["priority_from"],
                scores=queue_scores,
            )
        except ValidationError as error:
            raise CommandError(
                "; ".join(
                    f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items()
                )
            ) from error
        skipped = len(solution_ids) - created
        self.stdout.write(
            f"queued {created} {kind} tasks in generation {generation} ({skipped} already queued)"
        )
