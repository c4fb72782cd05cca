"""`manage.py seed_demo`: demo problems, candidates, a ready queue and demo logins."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from labeling.demo_data import DEMO_LOGINS, demo_seed


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

    def handle(self, *args: Any, **options: Any) -> None:
        result = demo_seed(if_empty=options["if_empty"], grade=not options["no_grade"])
        if result.skipped:
            self.stdout.write("seed_demo: problems already exist; nothing to do (--if-empty).")
            return
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
