"""The permissions Stepwise checks, by name (see docs/decisions/0010-permissions-model.md).

Model permissions, granted through groups, rather than ``is_staff``: staff status only lets a
user into the admin; what they may see and do there is what their permissions say.
"""

# Download labels (streamed, as a background job, or the admin action): every annotator's
# labels, gold answers of QC and screening included.
EXPORT_LABELS = "labeling.export_labels"
# The progress and quality dashboard (and its plots).
VIEW_DASHBOARD = "labeling.view_dashboard"
# Pause or resume an annotator (dashboard buttons and admin actions alike).
PAUSE_ANNOTATORS = "labeling.change_annotatorprofile"
# Import JSONL (the admin's "Import JSONL" pages and the import API): adding the rows it adds.
IMPORT_PROBLEMS = "labeling.add_problem"
IMPORT_CANDIDATES = "labeling.add_solution"
IMPORT_LABELS = "labeling.add_label"
