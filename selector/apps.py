from django.apps import AppConfig


class SelectorConfig(AppConfig):
    name = "selector"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Labeling offers hooks and never imports the selector: it plugs in here.
        from selector.dashboard import dashboard_register
        from selector.queries import queue_scores_register

        dashboard_register()
        queue_scores_register()
