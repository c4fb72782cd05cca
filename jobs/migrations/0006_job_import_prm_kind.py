# Issue 18: importing an existing PRM runs as a job (its paths are checked on the worker).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0005_job_import_kind'),
    ]

    operations = [
        migrations.AlterField(
            model_name='job',
            name='kind',
            field=models.CharField(choices=[('train', 'Train new selector'), ('evaluate', 'Evaluate'), ('promote', 'Promote'), ('score', 'Score pool'), ('fill', 'Fill queue'), ('export', 'Export'), ('benchmark', 'Benchmark'), ('simulate', 'Simulate active learning'), ('generate', 'Generate candidates'), ('import', 'Import JSONL'), ('import_prm', 'Import a PRM')], max_length=10),
        ),
    ]
