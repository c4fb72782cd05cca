"""``Stepwise(url, token)``: what staff do in the admin, from a script.

Every call is one request to the staff API (``/api/docs/`` on the server lists them). Calls
that start work (imports, train, evaluate, promote, score, fill) return a ``Job`` at once;
``wait(job)`` follows it to the end, with a tqdm bar when tqdm is installed, and raises
``JobFailed`` (carrying the server's errors) if it failed. A refused request raises
``APIError`` with the fields the server named.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeAlias

import httpx

from stepwise_client.errors import APIError, JobFailed, JobTimeout

# A file's path, its bytes, or records: dicts (one JSON object a line), or lines (str/bytes).
Source: TypeAlias = str | os.PathLike[str] | bytes | Iterable[Any]
VersionRef: TypeAlias = int | str | Mapping[str, Any]

_FINISHED = ("succeeded", "failed", "cancelled")
_CHUNK = 1 << 16


@dataclass
class Job:
    """A background job as the server last reported it."""

    id: int
    kind: str = ""
    status: str = "queued"
    done: int = 0
    total: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    version: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in _FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_api(cls, data: Mapping[str, Any], url: str = "") -> Job:
        progress = data.get("progress") or {}
        return cls(
            id=int(data["id"]),
            kind=str(data.get("kind", "")),
            status=str(data.get("status", "")),
            done=int(progress.get("done", 0)),
            total=int(progress.get("total", 0)),
            result=dict(data.get("result") or {}),
            errors=list(data.get("errors") or []),
            url=url,
            version=data.get("version"),
        )


class Stepwise:
    """A client for one Stepwise server, signed in with a user's API token.

    Staff create a token with ``python manage.py drf_create_token USERNAME`` or on the admin's
    Tokens page; the token can do what its user may do in the admin.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Stepwise:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- imports ---------------------------------------------------------------------------

    def import_problems(
        self, source: Source, *, skip_invalid: bool = False, filename: str | None = None
    ) -> Job:
        """MATH-format problems (``problem, solution, answer, subject, level, unique_id``)."""
        return self._import("problems", source, skip_invalid=skip_invalid, filename=filename)

    def import_candidates(
        self, source: Source, *, skip_invalid: bool = False, filename: str | None = None
    ) -> Job:
        """Candidate solutions (``unique_id``, ``steps`` or ``solution``, ``generator``?)."""
        return self._import("candidates", source, skip_invalid=skip_invalid, filename=filename)

    def import_prm800k(
        self, source: Source, *, skip_invalid: bool = False, filename: str | None = None
    ) -> Job:
        """PRM800K label records."""
        return self._import("prm800k", source, skip_invalid=skip_invalid, filename=filename)

    def _import(
        self, kind: str, source: Source, *, skip_invalid: bool, filename: str | None
    ) -> Job:
        """Send the JSONL as the raw body, streamed from a file with its length known (records
        are written to a temporary file first); the server answers with the job, or with the
        job that already has the same bytes."""
        with _jsonl_file(source) as (stream, name):
            params = {"skip_invalid": _flag(skip_invalid), "filename": filename or name}
            response = self._request(
                "POST",
                f"/api/imports/{kind}/",
                params=params,
                content=stream,
                headers={"Content-Type": "application/x-ndjson"},
            )
        return self._started(response)

    # --- the selector loop -----------------------------------------------------------------

    def train(self, **params: Any) -> Job:
        """Train a new version on the labels so far (``epochs``, ``learning_rate``, ``name``,
        ``base_version_id``, label hygiene flags); ``base=True``: an untrained base version."""
        return self._started(self._request("POST", "/api/selector/train/", json=params))

    def evaluate(
        self,
        version: VersionRef | None = None,
        *,
        benchmark: str | os.PathLike[str] | None = None,
        threshold: float = 0.5,
    ) -> Job:
        """Evaluate a version (default: the newest ready one) on the frozen evaluation set, or,
        with ``benchmark`` (a ProcessBench or PRM800K JSONL file), on that benchmark."""
        body: dict[str, Any] = {}
        if version is not None:
            body["version"] = _version_ref(version)
        if benchmark is None:
            return self._started(self._request("POST", "/api/selector/evaluate/", json=body))
        path = Path(benchmark)
        with path.open("rb") as stream:
            response = self._request(
                "POST",
                "/api/selector/evaluate/",
                data={**{k: str(v) for k, v in body.items()}, "threshold": str(threshold)},
                files={"benchmark": (path.name, stream, "application/x-ndjson")},
            )
        return self._started(response)

    def promote(self, version: VersionRef, *, force: bool = False) -> Job:
        """Score the pool with ``version``, then make it the active selector. The server
        refuses (``APIError`` naming ``force``) a version its evaluation found clearly worse
        than the active one, unless ``force``."""
        body = {"version": _version_ref(version), "force": force}
        return self._started(self._request("POST", "/api/selector/promote/", json=body))

    def score(self, version: VersionRef | None = None) -> Job:
        """Score the candidates a version (default: the active one) has not scored yet."""
        body = {} if version is None else {"version": _version_ref(version)}
        return self._started(self._request("POST", "/api/selector/score/", json=body))

    def fill(self, **params: Any) -> Job:
        """Queue candidates by a selection rule (``per_problem``, ``wrong_fraction``,
        ``generation``, ``rule``: "80_20", "uncertainty" or "mixed"; the server's settings by
        default). A rule the active version cannot fill by is an ``APIError`` naming ``rule``."""
        return self._started(self._request("POST", "/api/selector/fill/", json=params))

    def generate(self, *, model: str, **params: Any) -> Job:
        """Sample candidates on the ml worker (``n``, ``temperature``, ``max_new_tokens``,
        ``prompt_template``, ``problems``, ``seed``), then import, grade and score them."""
        body = {"model": model, **params}
        return self._started(self._request("POST", "/api/selector/generate/", json=body))

    def versions(self) -> list[dict[str, Any]]:
        """Every selector version, newest first, with its metrics and their intervals."""
        return list(self._request("GET", "/api/selector/versions/").json())

    # --- jobs ------------------------------------------------------------------------------

    def job(self, job: Job | int) -> Job:
        """The job as it is now."""
        job_id = job.id if isinstance(job, Job) else int(job)
        path = f"/api/jobs/{job_id}/"
        return Job.from_api(self._request("GET", path).json(), url=self.url + path)

    def cancel(self, job: Job | int) -> Job:
        job_id = job.id if isinstance(job, Job) else int(job)
        response = self._request("POST", f"/api/jobs/{job_id}/cancel/")
        return Job.from_api(response.json(), url=f"{self.url}/api/jobs/{job_id}/")

    def wait(
        self,
        job: Job | int,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        progress: bool = True,
    ) -> Job:
        """Follow ``job`` until it ends; returns it when it succeeded, raises ``JobFailed``
        (with its errors) when it failed or was cancelled, ``JobTimeout`` after ``timeout``
        seconds. The bar (``progress``) needs tqdm: ``pip install stepwise-client[progress]``."""
        current = self.job(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        with _progress_bar(current, enabled=progress) as show:
            show(current)
            while not current.finished:
                if deadline is not None and time.monotonic() > deadline:
                    raise JobTimeout(f"{current.kind} job {current.id} still {current.status}")
                time.sleep(poll)
                current = self.job(current)
                show(current)
        if not current.succeeded:
            raise JobFailed(current)
        return current

    # --- exports ---------------------------------------------------------------------------

    def export_prm800k(self, path: str | os.PathLike[str], **filters: Any) -> Path:
        """Every label as PRM800K JSONL into ``path``, streamed (``generation``, ``since``,
        ``include_qc``, ``include_screening``)."""
        return self._download("/api/export/prm800k/", path, filters)

    def export_stepwise(self, path: str | os.PathLike[str], **options: Any) -> Path:
        """TRL's stepwise-supervision format into ``path`` (the filters, plus ``neutral``,
        ``trajectories_only``, ``include_flagged``, ``include_unreliable``)."""
        return self._download("/api/export/stepwise/", path, options)

    def _download(self, url: str, path: str | os.PathLike[str], options: dict[str, Any]) -> Path:
        target = Path(path)
        params = {k: _flag(v) if isinstance(v, bool) else v for k, v in options.items()}
        partial = target.with_name(target.name + ".partial")
        with self._http.stream("GET", url, params=params) as response:
            if response.is_error:
                response.read()
                raise _api_error(response)
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
        partial.replace(target)  # a complete file or none
        return target

    # --- labeling, as an annotator ---------------------------------------------------------

    def next_task(self, *, exclude: Iterable[int] = ()) -> dict[str, Any] | None:
        """Claim the next task to rate (or your own leased one back); None: nothing to do."""
        response = self._request("POST", "/api/queue/next/", json={"exclude": list(exclude)})
        return None if response.status_code == 204 else dict(response.json())

    def submit_label(
        self,
        task: Mapping[str, Any] | int,
        *,
        ratings: list[int],
        finish_reason: str,
        total_time_ms: int = 0,
        flags: list[bool] | None = None,
        human_completion: str | None = None,
        finish_note: str = "",
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit one rating per step up to where rating stopped (PRM800K phase 2: the first
        negative ends it, ``finish_reason="found_error"``; all rated: ``"solution"``)."""
        task_id = task["id"] if isinstance(task, Mapping) else int(task)
        body = {
            "idempotency_key": idempotency_key or str(uuid.uuid4()),
            "ratings": ratings,
            "flags": flags,
            "human_completion": human_completion,
            "finish_reason": finish_reason,
            "finish_note": finish_note,
            "total_time_ms": total_time_ms,
        }
        return dict(self._request("POST", f"/api/tasks/{task_id}/submit/", json=body).json())

    def me(self) -> dict[str, Any]:
        return dict(self._request("GET", "/api/me/").json())

    # --- plumbing --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise _api_error(response)
        return response

    def _started(self, response: httpx.Response) -> Job:
        data = response.json()
        job = Job(id=int(data["job"]), url=str(data.get("url", "")))
        return self.job(job)


def _api_error(response: httpx.Response) -> APIError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return APIError(
        method=response.request.method,
        path=response.request.url.path,
        status_code=response.status_code,
        body=body,
    )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _version_ref(version: VersionRef) -> int | str:
    if isinstance(version, Mapping):
        return int(version["id"])
    return version


@contextmanager
def _jsonl_file(source: Source) -> Iterator[tuple[IO[bytes], str]]:
    """An open binary file of JSONL (for a length-known, streamed upload) and its name."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("rb") as stream:
            yield stream, path.name
        return
    with tempfile.TemporaryFile() as spool:
        if isinstance(source, bytes):
            spool.write(source)
        else:
            for record in source:
                spool.write(_line(record))
        spool.seek(0)
        yield spool, "records.jsonl"


def _line(record: Any) -> bytes:
    if isinstance(record, bytes):
        raw = record
    elif isinstance(record, str):
        raw = record.encode("utf-8")
    else:
        raw = json.dumps(record, ensure_ascii=False).encode("utf-8")
    return raw if raw.endswith(b"\n") else raw + b"\n"


@contextmanager
def _progress_bar(job: Job, *, enabled: bool) -> Iterator[Any]:
    """A callable that shows a job's progress on a tqdm bar, or does nothing without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        enabled = False  # the bar is optional: pip install stepwise-client[progress]
    if not enabled:
        yield lambda _job: None
        return
    bar = tqdm(total=job.total or None, desc=f"{job.kind} #{job.id}", unit="")

    def show(current: Job) -> None:
        if current.total and bar.total != current.total:
            bar.total = current.total
        bar.n = current.done
        bar.set_postfix_str(current.status, refresh=False)
        bar.refresh()

    try:
        yield show
    finally:
        bar.close()
