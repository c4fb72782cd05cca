"""Issue 20: SelectorVersion.ensemble_heads (0 or 1: no ensemble), and each score's
uncertainty with its per-step epistemic and aleatoric parts (null without an ensemble)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("selector", "0006_score_chunk_queued_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="selectorversion",
            name="ensemble_heads",
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="solutionscore",
            name="step_aleatoric",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="solutionscore",
            name="step_epistemic",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="solutionscore",
            name="uncertainty",
            field=models.FloatField(blank=True, null=True),
        ),
    ]
