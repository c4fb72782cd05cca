"""One background iterator: produce the next items on a thread while the caller uses this one.

The importers parse the next JSONL batches while the current one is written, and the export
fetches the next chunk of rows while the current one is formatted. Each side mostly waits on
something that releases the GIL (the database, the disk), so the two overlap.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

Item = TypeVar("Item")

_DONE = object()


def read_ahead(
    items: Iterator[Item],
    *,
    name: str,
    depth: int = 2,
    on_thread_exit: Callable[[], None] | None = None,
    join_timeout: float | None = 5.0,
) -> Iterator[Item]:
    """Yield ``items`` in order, drawn on a thread that keeps at most ``depth`` ready.

    An exception in the producer is re-raised here, at the item where it happened. When the
    caller stops early (an error, a ``break``), the producer stops at its next item; it is
    waited for up to ``join_timeout`` seconds (a reader blocked on a silent stdin cannot be
    woken, so not forever by default). ``on_thread_exit`` runs on the producer's thread as it
    ends: the export closes that thread's database connection there.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)
        finally:
            if on_thread_exit is not None:
                on_thread_exit()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the consumer failed or finished: let the producer go
        thread.join(timeout=join_timeout)
