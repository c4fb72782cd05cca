from django.apps import AppConfig


class SelectorConfig(AppConfig):
    name = "selector"
    default_auto_field = "django.db.models.BigAutoField"
