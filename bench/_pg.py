"""Plumbing the PostgreSQL benchmarks share: their own database, Django pointed at it."""

import os
import secrets

# Benchmarks are development runs: the settings refuse DEBUG=0 on PostgreSQL without a key.
os.environ.setdefault("SECRET_KEY", f"bench-only-{secrets.token_urlsafe(48)}")


def ensure_database(database_url: str) -> None:
    """Create the benchmark's database if it does not exist yet."""
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepwise.settings")
    import django

    django.setup()
