"""The client against the live test server (pytest-django's ``live_server``, a real HTTP
server in a thread), signed in with real DRF tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from tests.factories import UserFactory, annotator


@pytest.fixture
def server(live_server: Any, settings: Any, tmp_path: Path) -> str:
    settings.IMPORT_UPLOAD_DIR = tmp_path / "imports"
    return str(live_server.url)


@pytest.fixture
def staff_token(transactional_db: None) -> str:
    user = UserFactory(username="pipeline", is_staff=True, is_superuser=True)
    return Token.objects.create(user=user).key


@pytest.fixture
def annotator_token(transactional_db: None) -> str:
    return Token.objects.create(user=annotator("rater")).key


@pytest.fixture
def eager_jobs() -> Iterator[None]:
    """Jobs run in the server's thread right after the request commits (Celery's eager mode,
    the development switch ``jobs.services`` honours) instead of on a worker: for the tests
    of the client's own behaviour. The pipeline test runs a real worker."""
    from celery import current_app

    was = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    try:
        yield
    finally:
        current_app.conf.task_always_eager = was


# The selector's tiny CPU model, for the pipeline's real worker.
from tests.selector.conftest import tiny_base_model  # noqa: E402, F401
