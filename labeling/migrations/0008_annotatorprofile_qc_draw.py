"""AnnotatorProfile.qc_draw: each annotator's own random position for their next QC question
(issue 18, M4). Existing profiles get a draw each, not one shared value."""

import random

from django.db import migrations, models

import labeling.models


def draw_each(apps, schema_editor):
    AnnotatorProfile = apps.get_model("labeling", "AnnotatorProfile")
    rng = random.SystemRandom()
    for pk in AnnotatorProfile.objects.values_list("pk", flat=True).iterator():
        AnnotatorProfile.objects.filter(pk=pk).update(qc_draw=rng.random())


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0007_task_queued_by"),
    ]

    operations = [
        migrations.AddField(
            model_name="annotatorprofile",
            name="qc_draw",
            field=models.FloatField(default=labeling.models.qc_draw_new),
        ),
        migrations.RunPython(draw_each, migrations.RunPython.noop),
    ]
