from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from selector.services import SelectorError, selector_import


class Command(BaseCommand):
    help = (
        "Register an existing open PRM (a local directory or a Hugging Face hub id) as a "
        "selector version that scores through an adapter."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from selector.ml.adapters import ADAPTERS

        parser.add_argument("model", help="model directory, or hub id (owner/name) when online")
        parser.add_argument("--adapter", required=True, choices=ADAPTERS)
        parser.add_argument("--name", help="version name (default: import-<adapter>-<time>)")
        parser.add_argument(
            "--activate", action="store_true", help="make it the active selector now"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            version = selector_import(
                model=options["model"],
                adapter=options["adapter"],
                name=options["name"],
                activate=options["activate"],
            )
        except SelectorError as exc:
            raise CommandError(str(exc)) from exc
        state = "active" if version.is_active else "ready, not active"
        self.stdout.write(f"imported {version.name} ({options['adapter']}, {state})")
