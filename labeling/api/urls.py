from django.urls import path

from labeling.api import views

urlpatterns: list = [
    path("queue/next/", views.QueueNextView.as_view(), name="api-queue-next"),
    path(
        "tasks/<int:task_id>/heartbeat/",
        views.TaskHeartbeatView.as_view(),
        name="api-task-heartbeat",
    ),
    path("tasks/<int:task_id>/submit/", views.TaskSubmitView.as_view(), name="api-task-submit"),
    path("tasks/<int:task_id>/skip/", views.TaskSkipView.as_view(), name="api-task-skip"),
    path("me/", views.MeView.as_view(), name="api-me"),
]

# --- Exports (staff only) ---
from labeling.api import export_views  # noqa: E402

urlpatterns += [
    path("export/prm800k/", export_views.Prm800kExportView.as_view(), name="export-prm800k"),
    path("export/stepwise/", export_views.StepwiseExportView.as_view(), name="export-stepwise"),
    path("export/jobs/", export_views.ExportJobListView.as_view(), name="export-jobs"),
    path(
        "export/jobs/<int:job_id>/",
        export_views.ExportJobDetailView.as_view(),
        name="export-job-detail",
    ),
    path(
        "export/jobs/<int:job_id>/download/",
        export_views.ExportJobDownloadView.as_view(),
        name="export-job-download",
    ),
]
