from django.urls import path, register_converter

from labeling.api import views


class RowIdConverter:
    """A positive id that fits a 64-bit column: larger ones are a 404, not an overflow."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 0 < number < 2**63:
            raise ValueError(value)  # the URL does not match: 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(RowIdConverter, "id")

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
