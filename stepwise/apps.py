from django.apps import AppConfig


class StepwiseConfig(AppConfig):
    """The project package as an app, so its system checks are registered."""

    name = "stepwise"

    def ready(self) -> None:
        from stepwise import checks  # noqa: F401  (registers the checks)
