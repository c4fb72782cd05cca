"""The import API: ``POST /api/imports/{problems,candidates,prm800k}/`` with a JSONL file.

The body is the file itself (``application/x-ndjson``) or a multipart form with ``file``;
``skip_invalid`` (and, for a raw body, ``filename``) come as query parameters or form fields.
The file is spooled to disk as it arrives, then imported by a worker as a job (202 with the
job's id and URL). The same bytes sent again answer 200 with the job that has them.
Permissions are the admin's: adding problems, solutions or labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api.common import job_started_response, params_invalid
from jobs.api.serializers import JobStartedSerializer
from jobs.params import JobParamsInvalid
from labeling import permissions
from labeling.api.uploads import (
    JsonlParser,
    NdjsonParser,
    SpooledUpload,
    spooling_request,
    uploads_close,
)
from labeling.services.import_jobs import import_job_start
from stepwise.api import model_permission

NO_FILE = (
    "is required: send the JSONL as the request body (Content-Type: application/x-ndjson) "
    "or as the multipart form field 'file'"
)


class ImportOptionsSerializer(serializers.Serializer):
    skip_invalid = serializers.BooleanField(
        required=False,
        default=False,
        help_text="import the valid lines and list the invalid ones (default: import nothing "
        "if any line is invalid)",
    )


class ImportFormSerializer(ImportOptionsSerializer):
    file = serializers.FileField(help_text="JSONL, one record per line")


def _options(request: Request) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for source in (request.query_params, request.data):
        if hasattr(source, "get") and source.get("skip_invalid") is not None:
            given["skip_invalid"] = source.get("skip_invalid")
    options = ImportOptionsSerializer(data=given)
    options.is_valid(raise_exception=True)
    return dict(options.validated_data)


@extend_schema(
    request={
        "application/x-ndjson": OpenApiTypes.BINARY,
        "multipart/form-data": ImportFormSerializer,
    },
    parameters=[
        OpenApiParameter("skip_invalid", OpenApiTypes.BOOL, description="see the form field"),
        OpenApiParameter(
            "filename", OpenApiTypes.STR, description="a raw body's name, used in its errors"
        ),
    ],
    responses={
        202: JobStartedSerializer,
        200: OpenApiResponse(JobStartedSerializer, description="The same file's job."),
        400: OpenApiResponse(description="No file, an empty one, or a bad option (named)."),
        413: OpenApiResponse(description="Larger than STEPWISE_IMPORT_MAX_BYTES."),
        415: OpenApiResponse(description="Neither JSONL nor a multipart form."),
    },
)
class ImportView(APIView):
    import_format = ""
    parser_classes = [NdjsonParser, JsonlParser, MultiPartParser]

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        return super().initialize_request(spooling_request(request, "file"), *args, **kwargs)

    def post(self, request: Request) -> Response:
        try:
            upload = request.FILES.get("file")
            if not isinstance(upload, SpooledUpload):
                raise ValidationError({"file": [NO_FILE]})
            if not upload.size:
                raise ValidationError({"file": ["is empty"]})
            options = _options(request)
            try:
                started = import_job_start(
                    spooled=Path(upload.temporary_file_path()),
                    sha256=upload.sha256,
                    import_format=self.import_format,
                    filename=upload.name or "",
                    skip_invalid=options["skip_invalid"],
                    user=request.user,
                )
            except JobParamsInvalid as exc:
                raise params_invalid(exc) from None
        finally:
            uploads_close(request.FILES)
        return job_started_response(request, started.job, created=started.created)


class ProblemsImportView(ImportView):
    """MATH-format problems: ``problem, solution, answer, subject, level, unique_id``."""

    import_format = "problems"
    permission_classes = [model_permission(permissions.IMPORT_PROBLEMS)]


class CandidatesImportView(ImportView):
    """Candidate solutions: ``unique_id`` (or ``problem``), ``steps`` (or ``solution``),
    ``answer``?, ``generator``?."""

    import_format = "candidates"
    permission_classes = [model_permission(permissions.IMPORT_CANDIDATES)]


class Prm800kImportView(ImportView):
    """PRM800K label records (problems, solutions, tasks and labels created as needed)."""

    import_format = "prm800k"
    permission_classes = [model_permission(permissions.IMPORT_LABELS)]
