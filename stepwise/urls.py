from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("", RedirectView.as_view(url="/label/", permanent=False)),
    # Before the admin, whose catch-all would otherwise answer /admin/dashboard/.
    path("admin/dashboard/", include("labeling.urls_dashboard")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger's start-up script as a file: no inline script for the CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/jobs/", include("jobs.api.urls")),
    path("api/selector/", include("selector.api.urls")),
    path("api/", include("labeling.api.urls")),
    path("", include("labeling.urls")),
]

# API paths answer a 400 raised before their view (e.g. a body over the size limit) in JSON.
handler400 = "labeling.api.errors.bad_request_json_for_api"
# A busy or unreachable database is a 503 with Retry-After on every path, not a 500 page.
handler500 = "stepwise.database_errors.server_error"
