"""Beat's scheduler: a periodic task whose message could not be sent is sent again soon.

Celery's own scheduler logs a failed send (the broker down for a few seconds) and waits for
the entry's next run, a minute or more later. The periodic tasks here are catch-up tasks: each
run does whatever the state of the database calls for (leases past their expiry, silent jobs,
a queue below its low-water mark), so a run made late makes up every run that was missed. This
scheduler retries a failed send after 1, 2, 4, 8 and 16 s (bounded: after the fifth it logs
and leaves the work to the entry's next regular run). A run that was sent but failed on the
database retries itself (``stepwise.celery.PERIODIC_TASK``); a beat that was down runs every
entry that fell due meanwhile as soon as it starts (the persistent schedule's last-run times).
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

logger = logging.getLogger(__name__)


@dataclass
class _Owed:
    failures: int  # failed sends of this run so far
    retry_at: float  # time.monotonic() of the next try


class CatchUpScheduler(PersistentScheduler):
    send_retries = 5  # tries after the first failed send
    first_retry_seconds = 1.0  # doubled after each failed retry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._owed: dict[str, _Owed] = {}
        super().__init__(*args, **kwargs)

    @property
    def owed(self) -> dict[str, int]:
        """Entries whose last send failed, with how many sends of that run failed."""
        return {name: owed.failures for name, owed in self._owed.items()}

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        self._send(entry, producer)

    def _send(self, entry: ScheduleEntry, producer: Any) -> None:
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as error:
            owed = self._owed.get(entry.name) or _Owed(failures=0, retry_at=0.0)
            owed.failures += 1
            if owed.failures > self.send_retries:
                self._owed.pop(entry.name, None)
                logger.error(
                    "beat: could not send %s after %d tries (%s); its next regular run"
                    " makes the work up",
                    entry.name,
                    owed.failures,
                    error,
                )
                return
            delay = self.first_retry_seconds * 2 ** (owed.failures - 1)
            owed.retry_at = time.monotonic() + delay
            self._owed[entry.name] = owed
            logger.warning(
                "beat: could not send %s (%s); trying again in %.0f s", entry.name, error, delay
            )
        else:
            if self._owed.pop(entry.name, None) is not None:
                logger.info("beat: sent %s, which had failed before", entry.name)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        for name, owed in list(self._owed.items()):
            entry = self.schedule.get(name)
            if entry is None:  # removed from the schedule meanwhile
                self._owed.pop(name)
            elif owed.retry_at <= now:
                self._send(entry, self.producer)
        delay = super().tick(*args, **kwargs)
        if self._owed:
            soonest = min(owed.retry_at for owed in self._owed.values())
            delay = min(delay, max(0.0, soonest - time.monotonic()))
        return delay
