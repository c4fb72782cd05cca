"""Where SECRET_KEY comes from: the environment, or (development only) a key kept under var/.

Imported by the settings, so no Django imports here.
"""

import contextlib
import os
import secrets
from pathlib import Path

KEY_FILE_NAME = "secret_key"
MIN_KEY_LENGTH = 50  # Django's own deploy check (security.W009) asks for as many


class SecretKeyMissing(Exception):
    pass


def secret_key_resolve(*, environ: dict[str, str], debug: bool, var_dir: Path) -> tuple[str, bool]:
    """The key and whether it is a development key generated under ``var_dir``.

    A deployment (DEBUG off and anything but the embedded default: SQLite and the filesystem
    broker) must set SECRET_KEY: a key that only lives on one machine's disk would sign
    sessions the other web processes and hosts cannot read, and a fixed one would be public.
    """
    if environ.get("SECRET_KEY"):
        key = environ["SECRET_KEY"]
        if not debug and len(key) < MIN_KEY_LENGTH:
            # Django only warns (W009) and starts anyway; a short key signs sessions and
            # password-reset links that can be forged by guessing it.
            raise SecretKeyMissing(
                f"SECRET_KEY is too short ({len(key)} characters): with DEBUG off it must be at "
                f"least {MIN_KEY_LENGTH}. Set it to a long random string, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(64))'`."
            )
        return key, False
    database_url = environ.get("DATABASE_URL", "")
    broker_url = environ.get("CELERY_BROKER_URL", "")
    embedded = (not database_url or database_url.startswith("sqlite:")) and (
        not broker_url or broker_url.startswith("filesystem:")
    )
    if not embedded and not debug:
        raise SecretKeyMissing(
            "SECRET_KEY is not set. With DEBUG off and a database or broker server "
            f"(DATABASE_URL={_without_password(database_url) or 'sqlite'}, "
            f"CELERY_BROKER_URL={broker_url or 'filesystem://'}) Stepwise will not start on a "
            "development key. Set SECRET_KEY to a long random string, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(64))'`."
        )
    return key_file_read_or_create(path=var_dir / KEY_FILE_NAME), True


def key_file_read_or_create(*, path: Path) -> str:
    """Read the key file, creating it once (mode 0600) if absent.

    `make run` starts gunicorn and the Celery workers at the same moment, so several processes
    may race here: the key is written to a private temporary file and linked into place, which
    fails for all but the first, and everyone then reads the one file that won.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(64) + "\n")
            with contextlib.suppress(FileExistsError):  # another process won the race
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_KEY_LENGTH:
        raise SecretKeyMissing(f"{path} holds no usable key: delete it to have a new one made")
    return key


def _without_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"
