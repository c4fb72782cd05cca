"""Request and response shapes of the selector's staff API (types only; services decide)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from selector import queries
from selector.models import SelectorVersion, VersionStatus
from selector.services.queue_fill import FILL_RULES


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class VersionRefField(serializers.Field):
    """A selector version by id (a number) or by name (text)."""

    default_error_messages = {
        "invalid": "must be a selector version's id (a number) or its name (text)",
        "missing": "no selector version has the id or name {ref!r}",
    }

    def to_internal_value(self, data: Any) -> SelectorVersion:
        if isinstance(data, bool) or not isinstance(data, int | str) or data == "":
            self.fail("invalid")
        if isinstance(data, str) and (len(data) > 100 or "\x00" in data):
            self.fail("missing", ref=data[:100])  # no name is that long, or holds a NUL
        version = queries.version_find(data)
        if version is None:
            self.fail("missing", ref=data)
        return version

    def to_representation(self, value: SelectorVersion) -> int:
        return value.pk


class VersionPickSerializer(serializers.Serializer):
    version = VersionRefField(
        required=False, help_text="default: the newest ready version (score: the active one)"
    )


class EvaluateSerializer(VersionPickSerializer):
    threshold = serializers.FloatField(
        required=False,
        default=0.5,
        min_value=0.0,
        max_value=1.0,
        help_text="benchmark only: a step is called wrong below this score",
    )


class EvaluateFormSerializer(EvaluateSerializer):
    benchmark = serializers.FileField(
        help_text="a ProcessBench or PRM800K JSONL file to score the version on"
    )


class PromoteSerializer(serializers.Serializer):
    version = VersionRefField()
    force = serializers.BooleanField(
        required=False,
        default=False,
        help_text="promote even a version its evaluation found clearly worse than the active one",
    )


class TrainSerializer(serializers.Serializer):
    """The train job's parameters (``selector.services.job_params.TrainParams``)."""

    base = serializers.BooleanField(required=False, help_text="an untrained base version instead")
    name = serializers.CharField(required=False, max_length=100)
    base_version_id = serializers.IntegerField(required=False, help_text="default: the active")
    epochs = serializers.IntegerField(required=False, min_value=1)
    learning_rate = serializers.FloatField(required=False)
    exclude_unreliable = serializers.BooleanField(required=False)
    combine_overlaps = serializers.BooleanField(required=False)
    include_flagged = serializers.BooleanField(required=False)


class FillSerializer(serializers.Serializer):
    """The fill job's parameters (``selector.services.job_params.FillParams``)."""

    per_problem = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    wrong_fraction = serializers.FloatField(required=False, allow_null=True)
    generation = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    rule = serializers.ChoiceField(
        choices=FILL_RULES,
        required=False,
        allow_null=True,
        help_text="selection rule (default: the server's SELECTOR_RULE); uncertainty and mixed"
        " need an active version with an ensemble, else 400 naming rule",
    )


class GenerateSerializer(serializers.Serializer):
    """The generate job's parameters (``selector.services.job_params.GenerationParams``)."""

    model = serializers.CharField(help_text="a model directory on the ml worker, or a hub id")
    n = serializers.IntegerField(required=False, help_text="solutions per problem")
    temperature = serializers.FloatField(required=False)
    max_new_tokens = serializers.IntegerField(required=False)
    prompt_template = serializers.CharField(required=False, help_text="must contain {problem}")
    problems = serializers.CharField(
        required=False, help_text="a shell-style pattern on unique_id; default: every problem"
    )
    seed = serializers.IntegerField(required=False, allow_null=True)


class IntervalSerializer(serializers.Serializer):
    diff = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)
    verdict = serializers.ChoiceField(choices=["better", "worse", "no difference", "unclear"])


class VersionOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=VersionStatus.choices)
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    evaluated = serializers.BooleanField()
    eval_set = serializers.IntegerField(allow_null=True, help_text="the evaluation set's id")
    eval_labels = serializers.IntegerField(allow_null=True)
    metrics = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        help_text="headline metrics: step.auroc, step.auprc, first_error.acc_erroneous, "
        "first_error.acc_correct, first_error.f1",
    )
    compared_with = serializers.CharField(
        allow_null=True, help_text="the version active when this one was evaluated"
    )
    compared_metrics = serializers.DictField(
        child=serializers.FloatField(allow_null=True), allow_null=True
    )
    intervals = serializers.DictField(
        child=IntervalSerializer(),
        help_text="per headline metric: this version minus the compared one, paired-bootstrap "
        "95% interval, and its verdict",
    )
    training_summary = serializers.DictField()
    evaluation = serializers.DictField(help_text="everything the evaluation stored")
