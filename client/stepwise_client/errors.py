"""What the client raises: the server's own words, field by field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepwise_client.client import Job


class StepwiseError(Exception):
    """Anything the client raises on purpose."""


class APIError(StepwiseError):
    """The server answered 4xx or 5xx. ``errors`` maps each field it named to its messages
    (``{"epochs": ["must be between 1 and 1000, got 0"]}``); ``detail`` is its message when it
    named no field."""

    def __init__(self, *, method: str, path: str, status_code: int, body: Any) -> None:
        self.method, self.path, self.status_code, self.body = method, path, status_code, body
        self.detail: str | None = None
        self.errors: dict[str, list[str]] = {}
        if isinstance(body, dict):
            for key, value in body.items():
                if key == "detail":
                    self.detail = str(value)
                else:
                    self.errors[str(key)] = (
                        [str(v) for v in value] if isinstance(value, list) else [str(value)]
                    )
        elif body:
            self.detail = str(body)[:1000]
        said = "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in self.errors.items()
        )
        super().__init__(
            f"{method} {path}: HTTP {status_code}: {said or self.detail or 'no details'}"
        )


class JobFailed(StepwiseError):
    """A job ended failed or cancelled. ``errors`` are its ``{"line", "field", "message"}``
    rows: an import's invalid lines first, then the job's own failure (line and field None)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.errors = job.errors
        shown = [
            ":".join(str(part) for part in (e.get("line"), e.get("field")) if part is not None)
            + (": " if e.get("line") is not None or e.get("field") else "")
            + str(e.get("message"))
            for e in job.errors[:10]
        ]
        more = f" (and {len(job.errors) - 10} more)" if len(job.errors) > 10 else ""
        super().__init__(f"{job.kind} job {job.id} {job.status}: " + "; ".join(shown) + more)


class JobTimeout(StepwiseError, TimeoutError):
    """``wait`` gave up before the job finished (the job goes on)."""
