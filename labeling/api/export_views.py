"""Export endpoints (the ``labeling.export_labels`` permission): streamed downloads and jobs."""

from collections.abc import Iterator
from typing import Any

from django.http import FileResponse, Http404, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.models import Job, JobKind, JobStatus
from labeling import permissions
from labeling.services.export import (
    ExportFilters,
    StepwiseOptions,
    labels_for_export,
    parse_since,
    prm800k_chunks,
    stepwise_chunks,
)
from labeling.services.export_jobs import ExportJobBusy, export_job_create, export_path


class CanExportLabels(BasePermission):
    message = "Exporting labels needs the “Can export labels” permission (labeling.export_labels)."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user.is_authenticated and user.has_perm(permissions.EXPORT_LABELS))


class ExportJobConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "export_job_running"


class ExportFiltersSerializer(serializers.Serializer):
    # Task.generation's range: a larger value overflowed SQLite while the download streamed.
    generation = serializers.IntegerField(
        required=False, allow_null=True, min_value=-(2**31), max_value=2**31 - 1
    )
    since = serializers.CharField(required=False, allow_blank=True)
    include_qc = serializers.BooleanField(required=False, default=False)
    include_screening = serializers.BooleanField(required=False, default=False)

    def validate_since(self, value: str) -> Any:
        if not value:
            return None
        try:
            return parse_since(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def filters(self) -> ExportFilters:
        data = self.validated_data
        return ExportFilters(
            generation=data.get("generation"),
            since=data.get("since"),
            include_qc=data["include_qc"],
            include_screening=data["include_screening"],
        )


class StepwiseExportSerializer(ExportFiltersSerializer):
    """The filters and the TRL options (``StepwiseOptions``; defaults as ``export_stepwise``)."""

    neutral = serializers.ChoiceField(
        choices=["positive", "negative"],
        default="positive",
        help_text="TRL only: how a neutral (0) step is labeled",
    )
    trajectories_only = serializers.BooleanField(
        required=False,
        default=False,
        help_text="TRL only: one row per label, its chosen trajectory (no alternative completions)",
    )
    include_flagged = serializers.BooleanField(
        required=False,
        default=False,
        help_text="TRL only: keep flagged steps as targets (default: a row ends before one)",
    )
    include_unreliable = serializers.BooleanField(
        required=False,
        default=False,
        help_text="TRL only: keep labels of annotators who failed screening or are paused",
    )
    exclude_human_completions = serializers.BooleanField(
        required=False,
        default=False,
        help_text="TRL only: leave out steps the labeler wrote (default: labeled true)",
    )

    def stepwise_options(self) -> StepwiseOptions:
        return StepwiseOptions.from_params(self.validated_data)


class ExportJobCreateSerializer(StepwiseExportSerializer):
    format = serializers.ChoiceField(choices=["prm800k", "stepwise"], default="prm800k")


class ExportJobSerializer(serializers.ModelSerializer):
    progress_percent = serializers.IntegerField(read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "status",
            "params",
            "result",
            "progress_done",
            "progress_total",
            "progress_percent",
            "error",
            "created_at",
            "finished_at",
            "download_url",
        ]

    def get_download_url(self, job: Job) -> str | None:
        if job.status != JobStatus.SUCCEEDED:
            return None
        return reverse("export-job-download", args=[job.pk])


def _encoded(chunks: Iterator[tuple[str, int, int]]) -> Iterator[bytes]:
    for block, _lines, _rows in chunks:
        if block:
            yield block.encode("utf-8")


def _jsonl_response(chunks: Iterator[tuple[str, int, int]], filename: str) -> Any:
    response = StreamingHttpResponse(_encoded(chunks), content_type="application/jsonl")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    # Tell proxies not to buffer the stream into memory or disk.
    response["X-Accel-Buffering"] = "no"
    return response


@extend_schema(
    parameters=[ExportFiltersSerializer],
    responses={(200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR)},
)
class Prm800kExportView(APIView):
    """The labels as PRM800K JSONL, streamed; QC and screening labels only when asked."""

    permission_classes = [CanExportLabels]

    def get(self, request: Request) -> Any:
        params = ExportFiltersSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        labels = labels_for_export(filters=params.filters())
        return _jsonl_response(prm800k_chunks(labels=labels), "prm800k.jsonl")


@extend_schema(
    parameters=[StepwiseExportSerializer],
    responses={(200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR)},
)
class StepwiseExportView(APIView):
    """The labels in TRL's stepwise-supervision format, streamed."""

    permission_classes = [CanExportLabels]

    def get(self, request: Request) -> Any:
        params = StepwiseExportSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        labels = labels_for_export(filters=params.filters())
        chunks = stepwise_chunks(labels=labels, **params.stepwise_options().as_params())
        return _jsonl_response(chunks, "stepwise.jsonl")


class ExportJobListView(APIView):
    """Start a background export (for sets too large to wait on), or list recent ones."""

    permission_classes = [CanExportLabels]

    @extend_schema(responses=ExportJobSerializer(many=True))
    def get(self, request: Request) -> Response:
        jobs = Job.objects.filter(kind=JobKind.EXPORT).order_by("-created_at")[:50]
        return Response(ExportJobSerializer(jobs, many=True).data)

    @extend_schema(
        request=ExportJobCreateSerializer,
        responses={
            202: ExportJobSerializer,
            409: OpenApiResponse(description="You already have an export job queued or running."),
        },
    )
    def post(self, request: Request) -> Response:
        params = ExportJobCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            job = export_job_create(
                created_by=request.user,  # type: ignore[arg-type]
                filters=params.filters(),
                export_format=params.validated_data["format"],
                stepwise=params.stepwise_options(),
            )
        except ExportJobBusy as busy:
            raise ExportJobConflict(str(busy)) from None
        return Response(ExportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ExportJobDetailView(APIView):
    permission_classes = [CanExportLabels]

    @extend_schema(responses=ExportJobSerializer)
    def get(self, request: Request, job_id: int) -> Response:
        job = Job.objects.filter(kind=JobKind.EXPORT, pk=job_id).first()
        if job is None:
            raise Http404
        return Response(ExportJobSerializer(job).data)


@extend_schema(responses={(200, "application/jsonl"): OpenApiResponse(OpenApiTypes.BINARY)})
class ExportJobDownloadView(APIView):
    """The finished file of an export job (the admin links here too)."""

    permission_classes = [CanExportLabels]

    def get(self, request: Request, job_id: int) -> Any:
        job = Job.objects.filter(kind=JobKind.EXPORT, pk=job_id, status=JobStatus.SUCCEEDED).first()
        if job is None or not (path := export_path(job)).exists():
            raise Http404("no finished export with this id")
        filename = job.result.get("filename", path.name)
        return FileResponse(
            open(path, "rb"),  # FileResponse closes it
            as_attachment=True,
            filename=filename,
            content_type="application/jsonl",
        )
