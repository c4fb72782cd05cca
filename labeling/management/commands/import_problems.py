from labeling.management.commands._import_base import JsonlImportCommand
from labeling.services.imports import problems_import


class Command(JsonlImportCommand):
    help = (
        "Import MATH-format problems from JSONL (problem, solution, answer, subject, level, "
        "unique_id), upserting by unique_id."
    )
    service = staticmethod(problems_import)
    what = "problems"
