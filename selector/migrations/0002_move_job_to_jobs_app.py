"""Job now belongs to the jobs app (jobs/0001 takes it over in Django's state); the table
selector_job and its rows are untouched."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("selector", "0001_initial"),
        ("jobs", "0001_move_job_from_selector"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Job")],
            database_operations=[],
        ),
    ]
