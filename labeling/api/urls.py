from django.urls import path

import stepwise.converters  # noqa: F401  (the <id:…> converter)
from labeling.api import views

urlpatterns: list = [
    path("queue/next/", views.QueueNextView.as_view(), name="api-queue-next"),
    path(
        "tasks/<id:task_id>/heartbeat/",
        views.TaskHeartbeatView.as_view(),
        name="api-task-heartbeat",
    ),
    path("tasks/<id:task_id>/submit/", views.TaskSubmitView.as_view(), name="api-task-submit"),
    path("tasks/<id:task_id>/skip/", views.TaskSkipView.as_view(), name="api-task-skip"),
    path("me/", views.MeView.as_view(), name="api-me"),
]

# --- Exports (staff only) ---
from labeling.api import export_views  # noqa: E402

urlpatterns += [
    path("export/prm800k/", export_views.Prm800kExportView.as_view(), name="export-prm800k"),
    path("export/stepwise/", export_views.StepwiseExportView.as_view(), name="export-stepwise"),
    path("export/jobs/", export_views.ExportJobListView.as_view(), name="export-jobs"),
    path(
        "export/jobs/<id:job_id>/",
        export_views.ExportJobDetailView.as_view(),
        name="export-job-detail",
    ),
    path(
        "export/jobs/<id:job_id>/download/",
        export_views.ExportJobDownloadView.as_view(),
        name="export-job-download",
    ),
]

# --- Imports (staff: the admin's add permissions), run as jobs ---
from labeling.api import import_views  # noqa: E402

urlpatterns += [
    path("imports/problems/", import_views.ProblemsImportView.as_view(), name="import-problems"),
    path(
        "imports/candidates/",
        import_views.CandidatesImportView.as_view(),
        name="import-candidates",
    ),
    path("imports/prm800k/", import_views.Prm800kImportView.as_view(), name="import-prm800k"),
]
