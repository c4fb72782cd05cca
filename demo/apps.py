from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The top layer: demo content, its seeding and replay, and the `make run` launcher.

    It may import every other app; nothing imports it (docs/architecture.md, "Layers")."""

    name = "demo"
