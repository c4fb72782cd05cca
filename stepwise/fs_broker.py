"""kombu's filesystem transport (the embedded default's broker) with atomic puts.

kombu's ``_put`` creates ``<time>_<uuid>.<queue>.msg`` and then writes it; a consumer's
``_get`` lists the folder and moves and reads any such file without taking the writer's
lock, so a worker once read a half-written message and failed with JSONDecodeError. Here a
message is written under a name ``_get`` skips (``….msg.partial``) and renamed into place
with ``os.replace``, atomic within a folder: a consumer sees all of it or nothing.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # The filesystem Channel's signature, which itself differs from its base's (``message``).
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # kombu's name, so consumers order messages as before.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.partial"  # not "<queue>.msg" after the first dot: _get skips it
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
