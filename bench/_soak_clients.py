"""The chaos soak's annotators: API clients that behave like the page (bench/chaos_soak.py).

Each is a thread with its own token. It claims, thinks, and submits, retrying every 5xx and
dropped connection with the same idempotency key (as the page's outbox does) and honouring
Retry-After. A fresh connection per request (``Connection: close``) lets the soak's relay drop
exactly one answer. Every request is recorded with its outcome; every acknowledged submit
with the label the server named.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

CLIENT_TIMEOUT = 10.0  # seconds a request may take before the client gives up and retries


@dataclass(frozen=True)
class Behaviour:
    think: tuple[float, float]  # seconds between claim and submit, uniform
    abandon: float  # share of claims walked away from (the tab closed)
    late: float  # share of claims submitted after the hold ran out
    late_think: tuple[float, float]  # how long a late annotator is away


@dataclass(frozen=True)
class Request:
    started: float  # time.time()
    ended: float
    kind: str  # claim | submit
    outcome: str  # ok | refused | 503 | 500 | 5xx | net


@dataclass
class Ack:
    key: str
    task_id: int
    annotator: str
    ratings: list[int]
    status: int  # 201 (created) or 200 (a retry of a committed submit)
    label_id: int
    late: bool
    held_past_expiry: bool  # submitted after the lease's expiry on the client's clock


@dataclass
class Ledger:
    """What the annotators saw, shared by their threads."""

    requests: list[Request] = field(default_factory=list)
    acks: dict[str, Ack] = field(default_factory=dict)
    refusals: list[tuple[str, int, str, bool]] = field(default_factory=list)  # key, status, why
    unfinished: list[str] = field(default_factory=list)  # keys still retrying at the deadline
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)


class Annotator(threading.Thread):
    def __init__(
        self,
        *,
        name: str,
        token: str,
        port: int,
        behaviour: Behaviour,
        lease_seconds: float,
        ledger: Ledger,
        stop: threading.Event,
        deadline: list[float],  # [time.time() after which retries give up], set at the stop
        seed: int,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.token, self.port, self.behaviour = token, port, behaviour
        self.lease_seconds, self.ledger, self.stop, self.deadline = (
            lease_seconds,
            ledger,
            stop,
            deadline,
        )
        self.rng = random.Random(seed)
        self.abandoned: dict[int, float] = {}  # task id -> when (its lease may still be live)

    def _call(
        self, kind: str, path: str, body: dict[str, Any], key: str = ""
    ) -> tuple[int | None, Any, float]:
        """(status or None on a dropped connection, parsed JSON body, Retry-After seconds)."""
        headers = {
            "Authorization": f"Token {self.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Connection": "close",
        }
        if key:
            headers["X-Soak-Key"] = key  # lets the relay say which submit's answer it dropped
        started = time.time()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT)
        try:
            connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
            response = connection.getresponse()
            raw = response.read()
            status = response.status
            retry_after = float(response.getheader("Retry-After") or 0)
            html = "html" in (response.getheader("Content-Type") or "")
        except (OSError, http.client.HTTPException):
            self.ledger.add(Request(started, time.time(), kind, "net"))
            return None, None, 0.0
        finally:
            connection.close()
        outcome = (
            "ok"
            if status < 300
            else "refused"
            if status < 500
            else "503"
            if status == 503 and not html
            else "500"
            if status == 500
            else "5xx"
        )
        self.ledger.add(Request(started, time.time(), kind, outcome))
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return status, data, retry_after

    def _pause(self, attempt: int, retry_after: float) -> None:
        wait = retry_after or min(4.0, 0.5 * 2**attempt)
        time.sleep(min(5.0, wait) * self.rng.uniform(0.8, 1.2))

    def _claim(self) -> dict[str, Any] | None:
        now = time.time()
        self.abandoned = {
            task: at
            for task, at in self.abandoned.items()
            if now - at < 2 * self.lease_seconds + 30
        }
        body = {"exclude": sorted(self.abandoned)}
        for attempt in range(1_000_000):
            if self.stop.is_set():
                return None
            status, data, retry_after = self._call("claim", "/api/queue/next/", body)
            if status == 200:
                return data
            if status is not None and status < 500:
                self.stop.wait(1.0)  # 204: nothing for me right now
                return None
            self._pause(attempt, retry_after)
        return None

    def _submit(self, task: dict[str, Any], claimed_at: float) -> None:
        steps = len(task["steps"])
        bad = self.rng.random() < 0.3
        ratings = [1] * steps if not bad else [1] * self.rng.randrange(steps) + [-1]
        key = str(uuid.uuid4())
        body = {
            "idempotency_key": key,
            "ratings": ratings,
            "flags": [False] * len(ratings),
            "human_completion": None,
            "finish_reason": "found_error" if bad else "solution",
            "finish_note": "",
            "total_time_ms": int(1000 * (time.time() - claimed_at)),
            "started_at": None,
        }
        held_past_expiry = time.time() - claimed_at > self.lease_seconds
        path = f"/api/tasks/{task['id']}/submit/"
        attempt = 0
        while not (self.stop.is_set() and time.time() > self.deadline[0]):
            status, data, retry_after = self._call("submit", path, body, key)
            if status in (200, 201):
                with self.ledger.lock:
                    self.ledger.acks[key] = Ack(
                        key=key,
                        task_id=task["id"],
                        annotator=self.name,
                        ratings=ratings,
                        status=status,
                        label_id=data["label_id"],
                        late=data["late"],
                        held_past_expiry=held_past_expiry,
                    )
                return
            if status is not None and status < 500:
                why = (data or {}).get("detail", "") if isinstance(data, dict) else ""
                with self.ledger.lock:
                    self.ledger.refusals.append((key, status, str(why), held_past_expiry))
                return
            self._pause(attempt, retry_after)
            attempt += 1
        with self.ledger.lock:
            self.ledger.unfinished.append(key)

    def run(self) -> None:
        self.stop.wait(self.rng.uniform(0, 2))  # people do not start in lock-step
        while not self.stop.is_set():
            task = self._claim()
            if task is None:
                continue
            claimed_at = time.time()
            roll = self.rng.random()
            if roll < self.behaviour.abandon and not self.abandoned:
                self.abandoned[task["id"]] = claimed_at
                continue
            late = roll > 1 - self.behaviour.late
            think = self.behaviour.late_think if late else self.behaviour.think
            self.stop.wait(self.rng.uniform(*think))
            self._submit(task, claimed_at)
