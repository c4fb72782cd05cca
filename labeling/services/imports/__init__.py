"""Import MATH problems, candidate solutions and PRM800K label records from JSONL streams.

``pipeline`` is what the three importers share (batches parsed on a read-ahead thread, written
in one transaction, every bad line named); ``problems``, ``candidates`` and ``prm800k`` are the
importers.
"""

from labeling.services.imports.candidates import candidates_import, solution_text_split
from labeling.services.imports.pipeline import (
    DEFAULT_BATCH_SIZE,
    ImportFailed,
    ImportReport,
)
from labeling.services.imports.prm800k import prm800k_import
from labeling.services.imports.problems import problems_import

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ImportFailed",
    "ImportReport",
    "candidates_import",
    "prm800k_import",
    "problems_import",
    "solution_text_split",
]
