"""The embedded default's filesystem broker: a consumer never reads a message half-written."""

from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

TRANSPORT = "stepwise.fs_broker:Transport"


class ReadWhileWritten:
    """A payload part whose serialisation runs the consumer's ``_get``: it polls the folder
    while ``_put`` is writing the message, the moment a worker once read a half-written file
    (kombu's own ``_put`` creates the file, then writes it) and failed with JSONDecodeError."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.seen: list[object] = []

    def __json__(self) -> str:
        try:
            self.seen.append(self.channel._get("q"))
        except Empty:
            self.seen.append(None)
        except ValueError as exc:  # JSONDecodeError: the file was there, not yet complete
            self.seen.append(exc)
        return "x" * 100_000


def test_a_message_appears_in_the_queue_folder_only_once_complete(tmp_path: Path) -> None:
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    options["control_folder"] = str(tmp_path / "control")
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options) as conn:
        channel: Any = conn.default_channel
        probe = ReadWhileWritten(channel)
        channel._put("q", {"body": probe})
        assert probe.seen == [None]  # nothing to read while it was being written
        assert [p.name.endswith(".q.msg") for p in folder.iterdir()] == [True]  # no temp left
        assert channel._get("q") == {"body": "x" * 100_000}


def test_the_embedded_default_broker_uses_this_transport(settings: Any) -> None:
    from stepwise.celery import app

    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("the broker is not the filesystem one")
    with app.connection_for_write() as conn:
        assert conn.transport_cls == TRANSPORT
