"""The selector's staff API: start train, evaluate, promote, score, fill and generate jobs
(202 with the job), and list the versions with their metrics. Permissions are the admin's:
``jobs.add_job`` starts jobs, ``selector.view_selectorversion`` reads versions. Thin: each view
checks its input and calls one service; bad input is a 400 naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api.common import job_started_response, params_invalid
from jobs.api.serializers import JobStartedSerializer
from jobs.models import Job, JobKind
from jobs.params import JobParamsInvalid
from jobs.services import JobLimitReached
from labeling.api.parsers import NestingLimitedJSONParser
from labeling.api.uploads import SpooledUpload, spooling_request
from selector import queries
from selector.api.serializers import (
    EvaluateFormSerializer,
    EvaluateSerializer,
    FillSerializer,
    GenerateSerializer,
    PromoteSerializer,
    TrainSerializer,
    VersionOutSerializer,
    VersionPickSerializer,
)
from selector.models import SelectorVersion
from selector.services.benchmark import benchmark_upload
from selector.services.common import SelectorError
from selector.services.eval_set import EvalSetTooSmall
from selector.services.jobs import PromotionRefused, job_start, promotion_start, scoring_start
from selector.services.promotion import MetricCheck
from stepwise.api import model_permission

STARTED = {
    202: JobStartedSerializer,
    400: OpenApiResponse(description="A bad parameter, named."),
    409: OpenApiResponse(description="Too many selector jobs queued or running (the limits)."),
}


class JobLimitConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "job_limit"


def _metric_check(m: MetricCheck) -> dict[str, Any]:
    return {
        "metric": m.key,
        "label": m.label,
        "challenger": m.challenger,
        "active": m.active,
        "diff": m.diff,
        "low": m.low,
        "high": m.high,
        "verdict": m.verdict,
    }


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ParseError("The body must be a JSON object.")
    return request.data


def _version_or_newest(data: dict[str, Any]) -> SelectorVersion:
    version = data.get("version") or queries.version_newest_ready()
    if version is None:
        raise ValidationError({"version": ["no version is ready yet: train one first"]})
    return version


class JobStartView(APIView):
    permission_classes = [model_permission("jobs.add_job")]

    def started(self, request: Request, start: Any, **kwargs: Any) -> Response:
        """Call ``start(**kwargs, user=…)``; its refusals become 400s naming the field."""
        try:
            job: Job = start(user=request.user, **kwargs)
        except JobParamsInvalid as exc:
            raise params_invalid(exc) from None
        except PromotionRefused as exc:
            check = exc.check
            return Response(
                {
                    "force": [f"{check.message} Send force=true to promote it anyway."],
                    "verdict": check.verdict,
                    "active": check.active,
                    "metrics": [_metric_check(m) for m in check.metrics],
                },
                status=status.HTTP_409_CONFLICT,
            )
        except JobLimitReached as exc:
            raise JobLimitConflict(str(exc)) from None
        except EvalSetTooSmall as exc:
            raise ValidationError({"eval_set": [str(exc)]}) from None
        except SelectorError as exc:
            field = "version" if "version" in kwargs else "detail"
            raise ValidationError({field: [str(exc)]}) from None
        return job_started_response(request, job)


class TrainView(JobStartView):
    @extend_schema(operation_id="selector_train", request=TrainSerializer, responses=STARTED)
    def post(self, request: Request) -> Response:
        """Train a new version on the labels so far (``base: true``: an untrained one)."""
        return self.started(request, job_start, kind=JobKind.TRAIN, params=_body(request))


class FillView(JobStartView):
    @extend_schema(operation_id="selector_fill", request=FillSerializer, responses=STARTED)
    def post(self, request: Request) -> Response:
        """Queue candidates with the active version by a selection rule (``rule``: 80_20,
        uncertainty or mixed; default the server's ``SELECTOR_RULE``)."""
        return self.started(request, job_start, kind=JobKind.FILL, params=_body(request))


class GenerateView(JobStartView):
    @extend_schema(operation_id="selector_generate", request=GenerateSerializer, responses=STARTED)
    def post(self, request: Request) -> Response:
        """Sample candidate solutions with a causal LM on the ml worker, then import, grade
        and score them (``generate_candidates``' fields)."""
        return self.started(request, job_start, kind=JobKind.GENERATE, params=_body(request))


class ScoreView(JobStartView):
    @extend_schema(operation_id="selector_score", request=VersionPickSerializer, responses=STARTED)
    def post(self, request: Request) -> Response:
        """Score the candidates a version (default: the active one) has not scored yet."""
        data = VersionPickSerializer(data=_body(request))
        data.is_valid(raise_exception=True)
        return self.started(request, scoring_start, version=data.validated_data.get("version"))


class EvaluateView(JobStartView):
    parser_classes = [NestingLimitedJSONParser, MultiPartParser]

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        return super().initialize_request(spooling_request(request, "benchmark"), *args, **kwargs)

    @extend_schema(
        operation_id="selector_evaluate",
        request={
            "application/json": EvaluateSerializer,
            "multipart/form-data": EvaluateFormSerializer,
        },
        responses=STARTED,
    )
    def post(self, request: Request) -> Response:
        """Evaluate a version on the frozen evaluation set, or, with a ``benchmark`` file
        (multipart), on that benchmark."""
        try:
            upload = request.FILES.get("benchmark")
            data = EvaluateSerializer(data=_body(request))
            data.is_valid(raise_exception=True)
            version = _version_or_newest(data.validated_data)
            if not isinstance(upload, SpooledUpload):
                return self.started(request, _evaluation_start, version=version)
            return self.started(
                request,
                _benchmark_start,
                version=version,
                upload=upload,
                threshold=data.validated_data["threshold"],
            )
        finally:
            for file in request.FILES.values():
                file.close()


def _evaluation_start(*, version: SelectorVersion, user: Any) -> Job:
    return job_start(kind=JobKind.EVALUATE, version=version, user=user)


def _benchmark_start(
    *, version: SelectorVersion, upload: SpooledUpload, threshold: float, user: Any
) -> Job:
    # The file is checked by the job (its errors are the job's), not in this request.
    return benchmark_upload(
        version=version,
        spooled=Path(upload.temporary_file_path()),
        filename=upload.name or "benchmark.jsonl",
        threshold=threshold,
        user=user,
    )


class PromoteView(JobStartView):
    @extend_schema(
        operation_id="selector_promote",
        request=PromoteSerializer,
        responses={
            **STARTED,
            409: OpenApiResponse(
                description="Clearly worse than the active version: the verdict, each headline "
                "metric's difference and interval; send force=true to promote it anyway."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        """Score the pool with a version, then make it the active one."""
        data = PromoteSerializer(data=_body(request))
        data.is_valid(raise_exception=True)
        return self.started(
            request,
            promotion_start,
            version=data.validated_data["version"],
            force=data.validated_data["force"],
        )


class VersionListView(APIView):
    permission_classes = [model_permission("selector.view_selectorversion")]

    @extend_schema(operation_id="selector_versions", responses=VersionOutSerializer(many=True))
    def get(self, request: Request) -> Response:
        """Every version, newest first, with its metrics and the intervals of its comparison."""
        versions: QuerySet[SelectorVersion] = queries.versions_listed()
        rows = [queries.version_summary(version) for version in versions]
        return Response(VersionOutSerializer(rows, many=True).data)
