"""Task.rule: the selection rule that queued a task (issue 20: 80/20, uncertainty, mixed,
uniform; blank when no rule chose it). QueuedBy.SELECTOR is now just "Selector"."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0008_annotatorprofile_qc_draw"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="rule",
            field=models.CharField(
                blank=True,
                choices=[
                    ("80_20", "80/20: convincing wrong answers"),
                    ("uncertainty", "Most uncertain"),
                    ("mixed", "Half 80/20, half uncertainty"),
                    ("uniform", "Uniform draw"),
                ],
                db_default="",
                default="",
                max_length=12,
            ),
        ),
        migrations.AlterField(
            model_name="task",
            name="queued_by",
            field=models.CharField(
                choices=[
                    ("uniform", "Uniform draw"),
                    ("selector", "Selector"),
                    ("manual", "By hand"),
                    ("import", "Import"),
                ],
                db_default="manual",
                default="manual",
                max_length=10,
            ),
        ),
    ]
