from django.urls import path

import stepwise.converters  # noqa: F401  (the <id:…> converter)
from jobs.api import views

urlpatterns: list = [
    path("<id:job_id>/", views.JobDetailView.as_view(), name="api-job-detail"),
    path("<id:job_id>/cancel/", views.JobCancelView.as_view(), name="api-job-cancel"),
    path("<id:job_id>/retry/", views.JobRetryView.as_view(), name="api-job-retry"),
]
