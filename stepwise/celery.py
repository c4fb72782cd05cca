"""The Celery app: configuration comes from Django settings (the CELERY_* names)."""

import os
from typing import Any

from celery import Celery
from django.db import InterfaceError, OperationalError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepwise.settings")

app = Celery("stepwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Options of the periodic tasks beat sends (lease expiry, queue top-up, jobs reaper): each is a
# catch-up task, doing whatever the database's state calls for, so running one late or twice is
# harmless. A run that hits a busy or unreachable database tries again after 2, 4, 8, 16 and
# 30 s, then gives up to the next regular run. See stepwise.beat for sends that fail.
PERIODIC_TASK: dict[str, Any] = {
    "acks_late": True,
    "time_limit": 300,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "retry_jitter": False,
    "max_retries": 5,
}
