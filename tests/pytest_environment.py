"""Loaded with ``-p`` (see pyproject.toml) before pytest-django reads the settings.

A test run is a development run even on PostgreSQL + Redis with DEBUG off, where the settings
refuse to start without SECRET_KEY; conftest.py is read too late to help (after Django is set
up). Worker processes the tests start inherit the key.
"""

import os
import secrets

os.environ.setdefault("SECRET_KEY", f"tests-only-{secrets.token_urlsafe(48)}")
