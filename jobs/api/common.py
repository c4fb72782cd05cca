"""What the apps' job-starting endpoints answer, the same way everywhere."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.models import Job
from jobs.params import JobParamsInvalid


def job_started_response(request: Request, job: Job, *, created: bool = True) -> Response:
    """202 with the job's id and the URL to follow it (200: an existing job, found again)."""
    url = request.build_absolute_uri(reverse("api-job-detail", args=[job.pk]))
    return Response(
        {"job": job.pk, "url": url},
        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
    )


def params_invalid(exc: JobParamsInvalid) -> ValidationError:
    """A 400 naming each bad parameter, in DRF's shape: ``{"field": ["message"]}``."""
    return ValidationError({field: [message] for field, message in exc.errors.items()})
