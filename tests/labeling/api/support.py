"""What the annotator API tests share: an authenticated client and a valid submit body."""

import uuid
from typing import Any

from rest_framework.test import APIClient


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def submit_body(**overrides: Any) -> dict[str, Any]:
    """A submit that rates three steps positive and ends with ``solution``; a fresh key."""
    body: dict[str, Any] = {
        "idempotency_key": str(uuid.uuid4()),
        "ratings": [1, 1, 1],
        "flags": None,
        "human_completion": None,
        "finish_reason": "solution",
        "total_time_ms": 1000,
    }
    body.update(overrides)
    return body


def claim(client: APIClient) -> int:
    """Claim the next task through the API; its id."""
    response = client.post("/api/queue/next/", {}, format="json")
    assert response.status_code == 200, response.content
    return int(response.json()["id"])
