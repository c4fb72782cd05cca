"""The annotator API: each view parses input, calls one service, and serializes the result."""

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import queries
from labeling.api.serializers import (
    ClaimRequestSerializer,
    HeartbeatOutSerializer,
    MeOutSerializer,
    SubmitOutSerializer,
    SubmitRequestSerializer,
    TaskOutSerializer,
)
from labeling.services.labels import IdempotencyKeyReused, label_submit
from labeling.services.queue import (
    AnnotatorIneligible,
    LeaseTakenBack,
    QueueError,
    TaskNotLeased,
    TaskUnavailable,
    lease_heartbeat,
    task_claim_next,
    task_skip,
)


class IsAnnotator(BasePermission):
    message = "Only members of the annotators group (or staff) can label."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return queries.user_is_annotator(request.user)


class Refused(APIException):
    """A refusal the page acts on: ``{"detail": words for the annotator, "code": which}``."""

    def __init__(self, status_code: int, error: QueueError | IdempotencyKeyReused, **extra: str):
        self.status_code = status_code
        super().__init__({"detail": str(error), "code": error.code, **extra})


_STATUS = [
    (TaskNotLeased, status.HTTP_404_NOT_FOUND),
    (LeaseTakenBack, status.HTTP_409_CONFLICT),
    (TaskUnavailable, status.HTTP_409_CONFLICT),
    (AnnotatorIneligible, status.HTTP_403_FORBIDDEN),
    (IdempotencyKeyReused, status.HTTP_422_UNPROCESSABLE_ENTITY),
]


def _refused(error: QueueError | IdempotencyKeyReused) -> Refused:
    http = next(http for kind, http in _STATUS if isinstance(error, kind))
    if isinstance(error, LeaseTakenBack):
        return Refused(http, error, kept_until=error.kept_until.isoformat())
    return Refused(http, error)


def _as_drf(error: DjangoValidationError) -> ValidationError:
    detail = error.message_dict if hasattr(error, "error_dict") else {"detail": error.messages}
    return ValidationError(detail)


class AnnotatorView(APIView):
    permission_classes = [IsAnnotator]


def _annotator(request: Request) -> User:
    # IsAnnotator has already turned anonymous requests away.
    assert isinstance(request.user, User)
    return request.user


class QueueNextView(AnnotatorView):
    @extend_schema(
        operation_id="queue_next",
        summary="Claim the next task (or get your own leased task back)",
        request=ClaimRequestSerializer,
        responses={
            200: TaskOutSerializer,
            204: OpenApiResponse(description="The queue has nothing for you."),
        },
    )
    def post(self, request: Request) -> Response:
        params = ClaimRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        claim = task_claim_next(
            annotator=_annotator(request), exclude=params.validated_data["exclude"]
        )
        if claim is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(TaskOutSerializer(claim).data)


class TaskHeartbeatView(AnnotatorView):
    @extend_schema(
        operation_id="task_heartbeat",
        summary="Extend your lease on a task",
        request=None,
        responses={
            200: HeartbeatOutSerializer,
            404: OpenApiResponse(
                description="Not yours, nor taken back from you lately: work on it is not saved."
            ),
            409: OpenApiResponse(
                description="`code` says why: `already_labeled` (you submitted it already), "
                "`taken_back` (your hold ran out; a submit fills the free slot), "
                "`held_by_another` (your hold ran out and others hold the slots; a submit is "
                "kept as a late label); the last two until `kept_until`."
            ),
        },
    )
    def post(self, request: Request, task_id: int) -> Response:
        try:
            expires_at = lease_heartbeat(annotator=_annotator(request), task_id=task_id)
        except QueueError as error:
            raise _refused(error) from error
        return Response(HeartbeatOutSerializer({"lease_expires_at": expires_at}).data)


class TaskSubmitView(AnnotatorView):
    @extend_schema(
        operation_id="task_submit",
        summary="Submit your step ratings for a task (idempotent by key)",
        request=SubmitRequestSerializer,
        responses={
            201: SubmitOutSerializer,
            200: OpenApiResponse(SubmitOutSerializer, description="A retry of an earlier submit."),
            400: OpenApiResponse(description="Invalid field; the body names it."),
            403: OpenApiResponse(
                description="Paused, failed screening, screening still to answer, or not "
                "being screened (`code` says which)."
            ),
            404: OpenApiResponse(description="No such task, or it is not leased to you."),
            409: OpenApiResponse(
                description="`already_labeled`: you labeled this task (another key); "
                "`task_changed`: the task changed while saving, send it again."
            ),
            422: OpenApiResponse(description="The key was used for a different submission."),
            503: OpenApiResponse(
                description="The database is busy or unreachable; retry after Retry-After."
            ),
        },
    )
    def post(self, request: Request, task_id: int) -> Response:
        params = SubmitRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            result = label_submit(
                annotator=_annotator(request), task_id=task_id, **params.validated_data
            )
        except DjangoValidationError as error:
            raise _as_drf(error) from error
        except (QueueError, IdempotencyKeyReused) as error:
            raise _refused(error) from error
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(SubmitOutSerializer(result).data, status=code)


class TaskSkipView(AnnotatorView):
    @extend_schema(
        operation_id="task_skip",
        summary="Give a task back; it is not offered to you again",
        request=None,
        responses={204: None, 404: OpenApiResponse(description="Not leased to you.")},
    )
    def post(self, request: Request, task_id: int) -> Response:
        try:
            task_skip(annotator=_annotator(request), task_id=task_id)
        except TaskNotLeased as error:
            raise _refused(error) from error
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(AnnotatorView):
    @extend_schema(operation_id="me", summary="Your labeling statistics", responses=MeOutSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeOutSerializer(queries.annotator_stats_get(user=_annotator(request))).data)
