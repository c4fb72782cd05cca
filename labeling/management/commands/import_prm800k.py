from labeling.management.commands._import_base import JsonlImportCommand
from labeling.services.imports import prm800k_import


class Command(JsonlImportCommand):
    help = (
        "Import PRM800K label records (phase 1 or 2) from JSONL: problems, candidate "
        "solutions, tasks and labels, then grade the candidates' final answers."
    )
    service = staticmethod(prm800k_import)
    what = "PRM800K records"
