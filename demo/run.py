"""`make run`: the whole product in one terminal — gunicorn, two Celery workers and beat.

Every process gets the same environment, so the embedded default (SQLite + filesystem broker
under ``var/``) and a PostgreSQL + Redis setup start the same way. Ctrl-C stops them all; if any
one of them dies, the rest are stopped too, so a half-running product never goes unnoticed.
It lives in the top layer (``demo``) because its banner prints the demo logins.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from demo.logins import DEMO_LOGINS

ROOT = Path(__file__).resolve().parent.parent


def _commands(host: str, port: str, var_dir: Path) -> dict[str, list[str]]:
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "stepwise"]
    return {
        "web": [
            python,
            "-m",
            "gunicorn",
            "stepwise.wsgi:application",
            "--bind",
            f"{host}:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--access-logfile",
            "-",
            "--log-level",
            "warning",
        ],
        # The default queue (grading, lease expiry, exports) and the ml queue (selector) get
        # separate workers so a training run never delays an annotator-facing task.
        "worker": [
            *celery,
            "worker",
            "-Q",
            "default",
            "-n",
            "default@%h",
            "-c",
            "2",
            "--loglevel",
            "INFO",
        ],
        "worker-ml": [
            *celery,
            "worker",
            "-Q",
            "ml",
            "-n",
            "ml@%h",
            "-c",
            "1",
            "--prefetch-multiplier",
            "1",
            "--loglevel",
            "INFO",
        ],
        "beat": [
            *celery,
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(var_dir / "celerybeat-schedule"),
        ],
    }


def _print_banner(url: str) -> None:
    print("\n" + "=" * 66)
    print(f"  Stepwise is running at {url}")
    print(f"    annotators: {url}/label/     admin: {url}/admin/     API: {url}/api/docs/")
    print("  Demo logins:")
    for username, password, role in DEMO_LOGINS:
        print(f"    {username:<10} {password:<22} {role}")
    print("  Ctrl-C stops everything.")
    print("=" * 66 + "\n", flush=True)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepwise.settings")
    import django

    django.setup()
    from django.conf import settings

    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in _commands(host, port, Path(settings.VAR_DIR)).items():
        procs[name] = subprocess.Popen(command, cwd=ROOT, start_new_session=True)

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    time.sleep(2)
    _print_banner(f"http://{host}:{port}")

    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"stepwise: {name} exited with {proc.returncode}; stopping the rest")
                exit_code = proc.returncode or 1
                stopping = True
        time.sleep(0.5)

    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print("stepwise: stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
