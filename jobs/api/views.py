"""Follow, cancel and retry a background job: ``GET /api/jobs/{id}/``,
``POST /api/jobs/{id}/cancel/``, ``POST /api/jobs/{id}/retry/``.

A job is visible to those who may view jobs in the admin and to whoever started it, so a staff
member allowed to import can follow their import; to anyone else it does not exist (404).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import queries, services
from jobs.api.serializers import JobOutSerializer
from jobs.models import Job


class JobNotRetried(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "job_not_retried"


class JobFinished(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "job_finished"


def _job_for(request: Request, job_id: int) -> Job:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not queries.job_visible_to(job, request.user):
        raise NotFound(f"No job {job_id} that you may see.")
    return job


class JobDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="job_detail",
        responses={
            200: JobOutSerializer,
            404: OpenApiResponse(description="No such job, or not one you may see."),
        },
    )
    def get(self, request: Request, job_id: int) -> Response:
        job = _job_for(request, job_id)
        return Response(JobOutSerializer(queries.job_summary(job)).data)


class JobCancelView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="job_cancel",
        request=None,
        responses={
            200: JobOutSerializer,
            403: OpenApiResponse(description="Someone else's job, without jobs.change_job."),
            404: OpenApiResponse(description="No such job, or not one you may see."),
            409: OpenApiResponse(description="The job had already finished."),
        },
    )
    def post(self, request: Request, job_id: int) -> Response:
        job = _job_for(request, job_id)
        if not queries.job_cancellable_by(job, request.user):
            raise PermissionDenied("Cancelling another user's job needs jobs.change_job.")
        if not services.job_cancel(job=job):
            job.refresh_from_db()
            raise JobFinished(f"{job} already {job.get_status_display().lower()}.")
        job.refresh_from_db()
        return Response(JobOutSerializer(queries.job_summary(job)).data)


class JobRetryView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="job_retry",
        request=None,
        responses={
            200: JobOutSerializer,
            403: OpenApiResponse(
                description="Someone else's job without jobs.change_job, or a kind whose "
                "starting permission you lack (an export needs labeling.export_labels)."
            ),
            404: OpenApiResponse(description="No such job, or not one you may see."),
            409: OpenApiResponse(
                description="It succeeded, runs with a live heartbeat, or your job limit."
            ),
        },
    )
    def post(self, request: Request, job_id: int) -> Response:
        """Queue a failed or cancelled job again with its parameters (the admin's Retry)."""
        job = _job_for(request, job_id)
        if not queries.job_cancellable_by(job, request.user):
            raise PermissionDenied("Retrying another user's job needs jobs.change_job.")
        try:
            job = services.job_retry(job_id=job.pk, user=request.user)
        except services.JobRetryForbidden as exc:
            raise PermissionDenied(str(exc)) from None
        except services.JobError as exc:
            raise JobNotRetried(str(exc)) from None
        return Response(JobOutSerializer(queries.job_summary(job)).data)
