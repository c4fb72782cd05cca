"""Staff dashboard routes, mounted at /admin/dashboard/ (before the admin's own catch-all)."""

from django.urls import path

import stepwise.converters  # noqa: F401  (the <id:…> converter)
from labeling import views_dashboard

urlpatterns = [
    path("", views_dashboard.dashboard_view, name="dashboard"),
    path("plots/<slug:name>.png", views_dashboard.dashboard_plot, name="dashboard-plot"),
    path(
        "annotators/<id:profile_id>/pause/",
        views_dashboard.annotator_pause,
        name="dashboard-annotator-pause",
    ),
]
