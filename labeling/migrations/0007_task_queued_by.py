"""Task.queued_by: how each task came into the queue, so that only uniformly drawn tasks feed
the frozen evaluation set. Existing tasks are classified from what they recorded:

- a selector version → "selector" (queue_fill);
- a label imported from a PRM800K record (record_extras) → "import";
- on a reserved problem, no version, no queued score, a priority above 0 → "uniform"
  (eval_queue_fill's signature: a hand-queued task has its score or priority 0);
- anything else → "manual" (the column's default).
"""

from django.db import migrations, models
from django.db.models import Exists, OuterRef


def classify(apps, schema_editor):
    Task = apps.get_model("labeling", "Task")
    Label = apps.get_model("labeling", "Label")
    Task.objects.filter(selector_version__isnull=False).update(queued_by="selector")
    imported = Label.objects.filter(task=OuterRef("pk"), record_extras__isnull=False)
    Task.objects.filter(selector_version__isnull=True).filter(Exists(imported)).update(
        queued_by="import"
    )
    Task.objects.filter(
        kind="normal",
        queued_by="manual",
        selector_version__isnull=True,
        queued_score__isnull=True,
        priority__gt=0,
        solution__problem__eval_reserved=True,
    ).update(queued_by="uniform")


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0006_label_late_task_late_count"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="queued_by",
            field=models.CharField(
                choices=[
                    ("uniform", "Uniform draw"),
                    ("selector", "Selector (80/20)"),
                    ("manual", "By hand"),
                    ("import", "Import"),
                ],
                db_default="manual",
                default="manual",
                max_length=10,
            ),
        ),
        migrations.RunPython(classify, migrations.RunPython.noop),
    ]
