"""The job as the API shows it (types only: ``jobs.queries.job_summary`` builds it)."""

from rest_framework import serializers

from jobs.models import JobKind, JobStatus


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class JobErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(allow_null=True, help_text="the input's line, when one")
    field = serializers.CharField(allow_null=True, help_text="a dotted path into the record")
    message = serializers.CharField()


class JobOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=JobKind.choices)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = ProgressSerializer()
    result = serializers.DictField(help_text="what the job reports when it is done")
    # The metaclass takes declared fields off the class, so Serializer.errors is untouched.
    errors = JobErrorSerializer(many=True)  # type: ignore[assignment]
    version = serializers.IntegerField(allow_null=True, help_text="its selector version's id")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class JobStartedSerializer(serializers.Serializer):
    """What every endpoint that starts a job answers (202; 200 when it found the same job)."""

    job = serializers.IntegerField()
    url = serializers.URLField(help_text="GET it to follow the job")
