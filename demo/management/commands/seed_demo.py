"""`manage.py seed_demo`: demo problems, candidates, a ready queue and demo logins."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.logins import DEMO_LOGINS
from demo.replay import demo_replay
from demo.seed import DemoSeedResult, demo_seed
from selector.services.common import SelectorError


class Command(BaseCommand):
    help = (
        "Load the built-in demo problems and candidate solutions, queue them for labeling and "
        "create the demo users. Safe to run repeatedly: existing rows are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing if any problem already exists (used by `make run`).",
        )
        parser.add_argument(
            "--no-grade",
            action="store_true",
            help="Leave new candidates ungraded (the labeling.grade_solutions task grades them).",
        )
        parser.add_argument(
            "--simulate",
            action="store_true",
            help=(
                "Then replay a short simulation in this database: a small synthetic pool, the "
                "oracle as annotator, two rounds of train, evaluate, promote and fill, so the "
                "admin shows two selector versions with metrics and two generations of tasks "
                "(a few minutes on CPU with the default base model). Once per database."
            ),
        )
        parser.add_argument(
            "--simulate-base",
            default=None,
            help="Base model for --simulate: a local model directory, or 'tiny' (a 2-layer "
            "BERT: seconds, for tests and slow machines). Default: SELECTOR_BASE_MODEL.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = demo_seed(if_empty=options["if_empty"], grade=not options["no_grade"])
        if result.skipped:
            self.stdout.write("seed_demo: problems already exist; nothing to do (--if-empty).")
        else:
            self._report(result)
        if options["simulate"]:
            self._simulate(options["simulate_base"])

    def _simulate(self, base_model: str | None) -> None:
        try:
            replay = demo_replay(
                base_model=base_model, echo=lambda line: self.stdout.write(f"  {line}")
            )
        except SelectorError as exc:
            raise CommandError(f"seed_demo --simulate: {exc}") from exc
        if replay.skipped:
            self.stdout.write("seed_demo --simulate: already replayed in this database.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"seed_demo --simulate: {replay.labels} oracle labels on {replay.problems} "
                f"synthetic problems; versions {', '.join(replay.versions)} (the last one "
                f"active); generations 1 and 2 queued {replay.queued[0]} and "
                f"{replay.queued[1]} tasks; {replay.seconds:.0f}s."
            )
        )

    def _report(self, result: DemoSeedResult) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"seed_demo: created {result.problems_created} problems, "
                f"{result.solutions_created} candidate solutions, {result.tasks_created} tasks, "
                f"{result.users_created} users; graded {result.solutions_graded} candidates."
            )
        )
        for mismatch in result.grade_mismatches:
            self.stderr.write(self.style.WARNING(f"seed_demo: grade differs: {mismatch}"))
        self.stdout.write("Demo logins:")
        for username, password, role in DEMO_LOGINS:
            self.stdout.write(f"  {username:<10} {password:<24} {role}")
