"""Deploy checks Django does not make for us."""

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def development_secret_key(app_configs: Any, **kwargs: Any) -> list[Warning]:
    # Django's own W009 only judges a key's length and variety; a random key that was made on
    # this machine's disk for the embedded default is long and varied, and still not for
    # production (other hosts cannot share it, and it is not managed as a secret).
    if getattr(settings, "SECRET_KEY_GENERATED", False):
        return [
            Warning(
                "SECRET_KEY is the development key generated under var/ for the embedded default.",
                hint="Set the SECRET_KEY environment variable to a long random string.",
                id="stepwise.W001",
            )
        ]
    return []
