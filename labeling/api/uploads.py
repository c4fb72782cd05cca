"""Files sent to the staff API, spooled to disk as they arrive: never held in memory whole.

A raw JSONL body (``application/x-ndjson``) goes through ``NdjsonParser``; a multipart form
through ``SpoolingUploadHandler``, which replaces Django's handlers (they keep up to 2.5 MB in
memory) for the views that take files. Both write to a temporary file under
``IMPORT_UPLOAD_DIR``, hash it on the way (sha256, what makes a re-send idempotent), and stop
with 413 once it passes ``IMPORT_UPLOAD_MAX_BYTES``, leaving nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import BaseParser, DataAndFiles

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite

_CHUNK = 64 * 1024


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"

    def __init__(self, field: str) -> None:
        limit = settings.IMPORT_UPLOAD_MAX_BYTES
        super().__init__(
            {field: [f"is larger than {limit} bytes, the limit (STEPWISE_IMPORT_MAX_BYTES)"]}
        )


class SpooledUpload(UploadedFile):
    """An uploaded file in a temporary file under ``IMPORT_UPLOAD_DIR`` (deleted on close
    unless a service moved it away first), with the sha256 of its bytes."""

    def __init__(self, *, field: str, name: str, content_type: str, charset: str | None) -> None:
        folder = Path(settings.IMPORT_UPLOAD_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        # Closed by ``close()`` (Django closes a form's files at the end of the request).
        temp = tempfile.NamedTemporaryFile(dir=folder, prefix="upload-", suffix=".partial")  # noqa: SIM115
        super().__init__(temp, name, content_type, 0, charset)
        self.temp = temp
        self.field = field
        self.sha256 = ""
        self._hash = hashlib.sha256()

    def temporary_file_path(self) -> str:
        return str(self.temp.name)

    def write_chunk(self, chunk: bytes) -> None:
        assert self.size is not None
        self.size += len(chunk)
        if self.size > settings.IMPORT_UPLOAD_MAX_BYTES:
            self.close()
            raise UploadTooLarge(self.field)
        self._hash.update(chunk)
        self.temp.write(chunk)

    def finish(self) -> SpooledUpload:
        self.temp.flush()
        self.temp.seek(0)
        self.sha256 = self._hash.hexdigest()
        return self

    def close(self) -> None:
        # A service that kept the file moved it away from its temporary name.
        with contextlib.suppress(FileNotFoundError):
            self.temp.close()


class NdjsonParser(BaseParser):
    """The request body as one JSONL file, under ``file`` in ``request.FILES``-like data; its
    name comes from the ``filename`` query parameter."""

    media_type = "application/x-ndjson"

    def parse(
        self,
        stream: IO[Any] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> DataAndFiles:
        request = (parser_context or {}).get("request")
        given = request.query_params.get("filename", "") if request is not None else ""
        name = Path(given.replace("\\", "/")).name
        upload = SpooledUpload(
            field="file",
            name=name if name not in ("", ".", "..") else "upload.jsonl",
            content_type=self.media_type,
            charset="utf-8",
        )
        while stream is not None and (chunk := stream.read(_CHUNK)):
            upload.write_chunk(chunk)
        return DataAndFiles({}, {"file": upload.finish()})


class JsonlParser(NdjsonParser):
    """The same, under the other name JSONL goes by."""

    media_type = "application/jsonl"


class SpoolingUploadHandler(FileUploadHandler):
    """Multipart uploads: spool the first part named in ``fields`` to disk (others skipped)."""

    def __init__(self, request: HttpRequest, *, fields: tuple[str, ...]) -> None:
        super().__init__(request)
        self.fields = fields
        self.taken: set[str] = set()
        self.upload: SpooledUpload | None = None

    def new_file(
        self, field_name: str, file_name: str, content_type: str, *args: Any, **kw: Any
    ) -> None:
        super().new_file(field_name, file_name, content_type, *args, **kw)
        if field_name not in self.fields or field_name in self.taken:
            raise SkipFile
        self.taken.add(field_name)
        self.upload = SpooledUpload(
            field=field_name, name=file_name, content_type=content_type, charset=self.charset
        )

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.upload is not None
        self.upload.write_chunk(raw_data)

    def file_complete(self, file_size: int) -> SpooledUpload | None:
        upload, self.upload = self.upload, None
        return upload.finish() if upload is not None else None

    def upload_interrupted(self) -> None:
        if self.upload is not None:
            self.upload.close()
            self.upload = None


def spooling_request(request: HttpRequest, *fields: str) -> HttpRequest:
    """``request`` with its multipart files spooled by ``SpoolingUploadHandler``; call it
    before anything reads the body (a view's ``initialize_request``)."""
    request.upload_handlers = [SpoolingUploadHandler(request, fields=fields)]
    return request


def spooling_view(
    view: Callable[..., HttpResponse],
    *fields: str,
    site: AdminSite,
    allowed: Callable[[HttpRequest], bool],
) -> Callable[..., HttpResponse]:
    """A Django form view (an admin page) whose files are spooled like the API's: ``view``
    must check CSRF itself (``admin_site.admin_view`` does), after the handlers are set, since
    the middleware's check would read the form, and parse its files, before they could be.
    A file past IMPORT_UPLOAD_MAX_BYTES is a 413 naming the limit, and nothing of it is kept.

    Who may not use the page is refused here, before anything reads the body (the CSRF check
    would, and spool the whole file): as ``site`` would (to its login page unless it lets
    the user in), then 403 unless ``allowed``, the permission ``view`` itself checks.
    """

    @functools.wraps(view)
    def spooled(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not site.has_permission(request):
            login = reverse("admin:login", current_app=site.name)
            return redirect_to_login(request.get_full_path(), login)
        if not allowed(request):
            raise PermissionDenied
        spooling_request(request, *fields)
        try:
            return view(request, *args, **kwargs)
        except UploadTooLarge as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"file": [str(exc.detail)]}
            text = "\n".join(f"{field}: {' '.join(map(str, why))}" for field, why in detail.items())
            return HttpResponse(text, status=413, content_type="text/plain; charset=utf-8")

    spooled.csrf_exempt = True  # type: ignore[attr-defined]
    return spooled


def uploads_close(files: Any) -> None:
    """Close every file of a request, which deletes those spooled and not kept (Django
    closes a form's files itself, not a raw body's; closing twice is harmless)."""
    groups = files.lists() if hasattr(files, "lists") else [(k, [v]) for k, v in files.items()]
    for _name, group in groups:
        for file in group:
            file.close()
