from labeling.management.commands._import_base import JsonlImportCommand
from labeling.services.imports import candidates_import


class Command(JsonlImportCommand):
    help = (
        'Import candidate solutions from JSONL: {"unique_id" or "problem", "steps": [...] or '
        '"solution": "...", "answer"?, "generator"?}, then grade their final answers.'
    )
    service = staticmethod(candidates_import)
    what = "candidates"
