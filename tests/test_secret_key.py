"""SECRET_KEY: refused when missing in a deployment, generated once for the embedded default."""

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def manage(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a clean environment: only what the test sets (plus PATH and the like)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "SECRET_KEY",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "DEBUG",
            "STEPWISE_TEST_DB",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "STEPWISE_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_deployment_without_secret_key_refuses_to_start(tmp_path: Path) -> None:
    result = manage(
        ["check"],
        tmp_path,
        DEBUG="0",
        DATABASE_URL="postgres://stepwise:hunter2@db.example:5432/stepwise",
        CELERY_BROKER_URL="redis://redis:6379/0",
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr
    assert "token_urlsafe" in result.stderr  # says how to make one
    assert "hunter2" not in result.stderr  # and does not print the database password
    assert not (tmp_path / "secret_key").exists()


def test_a_redis_broker_alone_is_no_longer_the_embedded_default(tmp_path: Path) -> None:
    result = manage(["check"], tmp_path, DEBUG="0", CELERY_BROKER_URL="redis://redis:6379/0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_the_embedded_default_generates_a_private_key_once_and_reuses_it(tmp_path: Path) -> None:
    first = manage(["shell", "--no-imports", "-c", PRINT_KEY], tmp_path, DEBUG="0")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = first.stdout.strip()
    assert len(key) >= 50 and key == key_file.read_text().strip()
    second = manage(["shell", "--no-imports", "-c", PRINT_KEY], tmp_path, DEBUG="0")
    assert second.stdout.strip() == key


def test_check_deploy_flags_the_generated_development_key(tmp_path: Path) -> None:
    result = manage(["check", "--deploy"], tmp_path, DEBUG="0")
    assert "stepwise.W001" in result.stdout + result.stderr
    with_key = manage(["check", "--deploy"], tmp_path, DEBUG="0", SECRET_KEY="k" * 10 + "x" * 50)
    assert "stepwise.W001" not in with_key.stdout + with_key.stderr


def test_an_explicit_key_is_used_as_given_and_nothing_is_written(tmp_path: Path) -> None:
    key = "an-explicit-key-" + "0123456789abcdef" * 4
    result = manage(
        ["shell", "--no-imports", "-c", PRINT_KEY],
        tmp_path,
        DEBUG="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SECRET_KEY=key,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == key
    assert not (tmp_path / "secret_key").exists()


def test_a_short_key_is_refused_with_debug_off(tmp_path: Path) -> None:
    result = manage(["check", "--deploy"], tmp_path, DEBUG="0", SECRET_KEY="x")
    assert result.returncode != 0
    assert "SECRET_KEY is too short" in result.stderr
    assert "50" in result.stderr  # says how long it must be
    at_limit = manage(["check", "--deploy"], tmp_path, DEBUG="0", SECRET_KEY="k" * 49 + "x")
    assert "SECRET_KEY is too short" not in at_limit.stdout + at_limit.stderr
    # a development run may use any key
    debug = manage(["shell", "--no-imports", "-c", PRINT_KEY], tmp_path, DEBUG="1", SECRET_KEY="x")
    assert debug.returncode == 0, debug.stderr
    assert debug.stdout.strip() == "x"
