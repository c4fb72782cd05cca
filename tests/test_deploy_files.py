"""Dockerfile and docker-compose.yml refer to things that exist (no Docker engine needed)."""

import fnmatch
import json
import os
import re
import secrets
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = {"migrate", "web", "worker", "worker-ml", "worker-ml-1", "beat"}
REQUIRED_ENV = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "SELECTOR_BASE_MODEL",
    "SELECTOR_DEVICE",
}
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def command(name: str) -> list[str]:
    """The service's command; [] for a service that runs its image's default (postgres)."""
    cmd = services()[name].get("command", [])
    assert isinstance(cmd, list), f"{name}: use the list form so no shell parses it"
    return [str(part) for part in cmd]


def option(cmd: list[str], *names: str) -> str:
    for i, part in enumerate(cmd):
        if part in names:
            return cmd[i + 1]
    raise AssertionError(f"none of {names} in {cmd}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        value = env.get(name)
        if op in (":-", "-"):
            return value if value else arg
        if op in (":?", "?") and not value:
            raise AssertionError(f"compose requires {name}: {arg}")
        return value or ""

    return INTERPOLATION.sub(sub, value)


def routed_queues() -> set[str]:
    return {settings.CELERY_TASK_DEFAULT_QUEUE} | {
        route["queue"] for route in settings.CELERY_TASK_ROUTES.values()
    }


def worker_queues() -> dict[str, set[str]]:
    return {
        name: set(option(command(name), "-Q", "--queues").split(","))
        for name in services()
        if command(name)[:4] == ["celery", "-A", "stepwise", "worker"]
    }


def test_compose_defines_every_service() -> None:
    assert set(services()) == {"postgres", "redis"} | APP_SERVICES


def test_app_services_share_the_production_environment() -> None:
    for name in APP_SERVICES:
        env = services()[name]["environment"]
        assert set(env) >= REQUIRED_ENV, name
        assert str(env["DEBUG"]) == "0"
        # The URLs point at the compose services, by name.
        assert re.match(r"postgres://[^@]+@postgres:5432/\w+$", env["DATABASE_URL"])
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert "${SECRET_KEY:?" in env["SECRET_KEY"]  # never a default key in production


def test_startup_order_waits_for_healthy_backends_and_migrations() -> None:
    svc = services()
    assert "healthcheck" in svc["postgres"] and "healthcheck" in svc["redis"]
    assert svc["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert svc["migrate"]["restart"] == "no"
    for name in APP_SERVICES - {"migrate"}:
        deps = svc[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name


def test_manage_py_commands_exist() -> None:
    uses = [command(n) for n in services() if command(n)[:2] == ["python", "manage.py"]]
    assert uses, "the migrate service runs manage.py"
    for cmd in uses:
        assert cmd[2] in get_commands(), cmd


def test_celery_services_use_the_project_app() -> None:
    from celery import Celery

    import stepwise
    import stepwise.celery

    assert isinstance(stepwise.celery.app, Celery)
    assert stepwise.celery_app is stepwise.celery.app  # what `-A stepwise` finds
    celery_services = [n for n in services() if command(n)[:1] == ["celery"]]
    assert set(celery_services) == {"worker", "worker-ml", "worker-ml-1", "beat"}
    for name in celery_services:
        assert command(name)[1:3] == ["-A", "stepwise"], name


def test_every_routed_queue_has_a_worker_and_no_worker_listens_to_nothing() -> None:
    queues = worker_queues()
    assert queues == {"worker": {"default"}, "worker-ml": {"ml"}, "worker-ml-1": {"ml"}}
    consumed = set().union(*queues.values())
    assert consumed == routed_queues() == {"default", "ml"}


def test_every_registered_task_lands_on_a_consumed_queue() -> None:
    from stepwise.celery import app

    app.loader.import_default_modules()
    names = [n for n in app.tasks if not n.startswith("celery.")]
    assert names, "the project registers tasks"
    consumed = set().union(*worker_queues().values())
    for name in names:
        queue = next(
            (
                route["queue"]
                for pattern, route in settings.CELERY_TASK_ROUTES.items()
                if fnmatch.fnmatchcase(name, pattern)
            ),
            settings.CELERY_TASK_DEFAULT_QUEUE,
        )
        assert queue in consumed, (name, queue)


def test_each_ml_worker_takes_one_job_at_a_time_on_its_own_gpu() -> None:
    gpus = []
    for name in ("worker-ml", "worker-ml-1"):
        cmd = command(name)
        assert option(cmd, "--concurrency", "-c") == "1"
        assert option(cmd, "--prefetch-multiplier") == "1"
        (device,) = services()[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert "count" not in device and len(device["device_ids"]) == 1
        gpus.append(device["device_ids"][0])
    assert gpus == ["0", "1"]
    # The second GPU's worker starts only when asked for: one-GPU hosts run as before.
    assert "profiles" not in services()["worker-ml"]
    assert services()["worker-ml-1"]["profiles"] == ["multi-gpu"]


@pytest.mark.slow
def test_celery_and_gunicorn_accept_every_option_used() -> None:
    def help_text(*args: str) -> str:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "stepwise.settings"}
        result = subprocess.run(
            [sys.executable, "-m", *args, "--help"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    helps = {
        "worker": help_text("celery", "-A", "stepwise", "worker"),
        "beat": help_text("celery", "-A", "stepwise", "beat"),
        "gunicorn": help_text("gunicorn"),
    }
    for name in services():
        cmd = command(name)
        if cmd[:1] == ["celery"]:
            text, options = helps[cmd[3]], cmd[4:]  # after `celery -A stepwise <sub>`
        elif cmd[:1] == ["gunicorn"]:
            text, options = helps["gunicorn"], cmd[1:]
        else:
            continue
        for part in options:
            if part.startswith("-") and part != "-":
                assert re.search(rf"(^|[\s,]){re.escape(part)}\b", text), (name, part)


@pytest.mark.filterwarnings("ignore:No directory at:UserWarning")  # no collectstatic in tests
def test_gunicorn_serves_the_project_wsgi_application() -> None:
    target = command("web")[1]
    module_name, _, attr = target.partition(":")
    assert module_name == settings.WSGI_APPLICATION.rsplit(".", 1)[0]
    module = __import__(module_name, fromlist=[attr])
    assert callable(getattr(module, attr))


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in dockerignore_patterns():
        pattern = pattern.removeprefix("**/")
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(Path(p).name, pattern) for p in prefixes
        ):
            return True
    return False


def test_dockerfile_builds_the_frontend_then_the_python_app() -> None:
    text = dockerfile()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE | re.IGNORECASE)
    assert stages[-1][0] == "python:3.11-slim"
    node = [alias for image, alias in stages if image.startswith("node:")]
    assert node, "a node stage builds the frontend"
    package = json.loads((ROOT / "frontend" / "package.json").read_text())
    assert "build" in package["scripts"]
    assert "RUN npm run build" in text
    assert "manage.py collectstatic --noinput" in text
    # The built page reaches the app stage from the node stage, where Vite writes it.
    assert re.search(rf"COPY --from={node[0]} \S+/dist frontend/dist", text)
    assert 'outDir: "dist"' in (ROOT / "frontend" / "vite.config.ts").read_text()


def test_dockerfile_copy_sources_exist_and_are_in_the_build_context() -> None:
    copies = re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile(), re.MULTILINE)
    assert copies
    for line in copies:
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    # The context leaves out what must never ship or would bloat it.
    for path in (".venv", "var", "frontend/node_modules", ".git"):
        assert ignored(path), path


def test_dockerfile_installs_every_package_the_settings_load() -> None:
    text = dockerfile()
    project_apps = [app for app in settings.INSTALLED_APPS if (ROOT / app).is_dir()]
    assert {"labeling", "selector", "jobs"} <= set(project_apps)
    for package in ("stepwise", *project_apps):
        assert re.search(rf"^COPY {package}/ {package}/$", text, re.MULTILINE), package
    assert "COPY manage.py" in text
    assert "pyproject.toml" in text and "pip install" in text


def run_check_deploy(
    env_overrides: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``manage.py check --deploy`` with the web service's environment from the compose file."""
    shell_env = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "POSTGRES_PASSWORD": "not-used-by-check",
        **env_overrides,
    }
    service_env = {
        key: interpolate(str(value), shell_env)
        for key, value in services()["web"]["environment"].items()
    }
    env = {
        **{k: v for k, v in os.environ.items() if k not in service_env},
        **service_env,
        "STEPWISE_VAR_DIR": str(tmp_path),
    }
    env.pop("STEPWISE_TEST_DB", None)
    # The browser tests' Playwright fixtures allow sync ORM calls in this process; production
    # never sets that, and `check --deploy` rightly flags it.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_behind_https(tmp_path: Path) -> None:
    result = run_check_deploy({"STEPWISE_HTTPS": "1"}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_check_deploy_does_fail_on_an_insecure_configuration(tmp_path: Path) -> None:
    # The check above is only worth something if the same command rejects a bad setup.
    result = run_check_deploy({"STEPWISE_HTTPS": "0"}, tmp_path)
    assert result.returncode != 0
    assert "security.W008" in result.stderr + result.stdout


# Path settings under var/ that each container keeps to itself, and why.
PER_CONTAINER = {
    "STATIC_ROOT": "collected into the image at build time",
    "CELERY_BROKER_DIR": "the embedded broker; compose uses Redis",
}
DATA_SERVICES = ("web", "worker", "worker-ml")  # every long-running process that reads or writes
CONTAINER_VAR = PurePosixPath("/app/var")  # the image's WORKDIR /app, and var/ under it


def shared_folders() -> dict[str, PurePosixPath]:
    """Every path setting under var/ (but the per-container ones), as the containers see it."""
    var = Path(settings.VAR_DIR).resolve()
    found = {}
    for name in dir(settings):
        if not name.isupper() or name == "VAR_DIR":
            continue
        value = getattr(settings, name)
        if not isinstance(value, Path):
            continue
        path = value.resolve()
        if path.is_relative_to(var) and name not in PER_CONTAINER:
            found[name] = CONTAINER_VAR / path.relative_to(var).as_posix()
    return found


def named_mounts(name: str) -> dict[PurePosixPath, str]:
    """A service's named-volume mounts: container path -> volume."""
    mounts = {}
    for entry in services()[name].get("volumes", []):
        source, target = str(entry).split(":")[:2]
        assert source in compose()["volumes"], f"{name}: {source} is not a named volume"
        mounts[PurePosixPath(target)] = source
    return mounts


def volume_holding(path: PurePosixPath, mounts: dict[PurePosixPath, str]) -> str | None:
    for target, volume in mounts.items():
        if path == target or path.is_relative_to(target):
            return volume
    return None


def test_every_folder_two_services_use_is_on_one_shared_volume() -> None:
    folders = shared_folders()
    # The settings this must cover: simulation reports (written by worker-ml, read by web),
    # checkpoints, exports, uploads and the import spool (which holds benchmark uploads too).
    assert {
        "SIMULATION_DIR",
        "SELECTOR_CHECKPOINT_DIR",
        "EXPORT_DIR",
        "MEDIA_ROOT",
        "IMPORT_UPLOAD_DIR",
    } <= set(folders)
    for setting, path in folders.items():
        volumes = {name: volume_holding(path, named_mounts(name)) for name in DATA_SERVICES}
        assert None not in volumes.values(), f"{setting} ({path}) is not shared: {volumes}"
        assert len(set(volumes.values())) == 1, f"{setting}: different volumes {volumes}"
    # The image creates each mount point, so a fresh volume belongs to its user, not root.
    made = re.search(r"mkdir -p ([^&\n]+)", dockerfile())
    assert made
    for target in named_mounts("web"):
        assert str(target.relative_to("/app")) in made.group(1).split(), target


def published_ports(name: str) -> list[tuple[str, str]]:
    """(host address, container port) for each port the service publishes, as compose reads
    the short syntax (an omitted address means every interface)."""
    ports = []
    for entry in services()[name].get("ports", []):
        if isinstance(entry, dict):
            ports.append((str(entry.get("host_ip", "")), str(entry["target"])))
            continue
        text = interpolate(str(entry), {}).split("/")[0]  # without a /tcp suffix
        if text.startswith("["):  # [v6]:host:container
            address, rest = text[1:].split("]:", 1)
        else:  # [[address:]host:]container
            parts = text.split(":")
            address, rest = (parts[0] if len(parts) == 3 else ""), parts[-1]
        ports.append((address, rest.rsplit(":", 1)[-1]))
    return ports


def test_no_port_is_published_on_every_interface() -> None:
    for name in services():
        for address, target in published_ports(name):
            assert address not in ("", "0.0.0.0", "::"), f"{name} publishes {target} to all"
    # The web port: on the loopback for a proxy on the host, and on the proxy network for a
    # proxy in a container. Nothing else can reach it to forge X-Forwarded-For.
    assert published_ports("web") == [("127.0.0.1", "8000")]
    web_networks = services()["web"]["networks"]
    assert "proxy" in web_networks and "default" in web_networks
    assert "proxy" in compose()["networks"]
    for name in set(services()) - {"web"}:
        assert "proxy" not in services()[name].get("networks", []), name
