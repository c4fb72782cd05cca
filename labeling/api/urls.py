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
