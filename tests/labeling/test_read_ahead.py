"""The one background iterator behind the importers' read-ahead and the export's prefetch."""

import threading
import time

import pytest

from labeling.read_ahead import read_ahead


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_items_arrive_in_order_and_the_thread_ends():
    assert list(read_ahead(iter(range(100)), name="ra-order")) == list(range(100))
    assert not threads_named("ra-order")


def test_a_producer_error_reaches_the_consumer_after_the_items_before_it():
    def batches():
        yield "first"
        raise UnicodeError("disk on fire")

    got = []
    with pytest.raises(UnicodeError, match="disk on fire"):
        for batch in read_ahead(batches(), name="ra-error"):
            got.append(batch)
    assert got == ["first"]


def test_the_producer_stops_when_the_consumer_stops_and_memory_stays_bounded():
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield len(produced)

    reader = read_ahead(endless(), name="ra-stop", depth=2)
    assert next(reader) == 1
    reader.close()  # what a failing write does to the loop
    assert not threads_named("ra-stop")
    assert len(produced) <= 4  # the one consumed, two queued, one blocked


def test_the_producer_runs_ahead_while_the_consumer_works():
    started = time.monotonic()

    def slow():
        for i in range(4):
            time.sleep(0.2)
            yield i

    for _ in read_ahead(slow(), name="ra-overlap"):
        time.sleep(0.2)
    # Serial would take 1.6 s; overlapped, about 1.0 s. A wide margin: no timing flakes.
    assert time.monotonic() - started < 1.4


def test_the_exit_hook_runs_on_the_producing_thread_however_it_ends():
    seen = []

    def hook():
        seen.append(threading.current_thread().name)

    list(read_ahead(iter([1, 2]), name="ra-hook-done", on_thread_exit=hook))
    reader = read_ahead(iter(range(10)), name="ra-hook-stopped", on_thread_exit=hook)
    next(reader)
    reader.close()
    assert seen == ["ra-hook-done", "ra-hook-stopped"]
