"""Request body parsing for the API: JSON with a nesting limit and a size limit."""

import io
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from labeling.services.jsonl import JSON_MAX_DEPTH, json_depth_exceeds


class NestingLimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing (400) bodies nested deeper than ``JSON_MAX_DEPTH`` or larger
    than ``DATA_UPLOAD_MAX_MEMORY_SIZE``: Python's decoder would recurse until it overflows."""

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1 if limit is not None else -1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise ParseError(f"The request body is larger than {limit} bytes.")
        if json_depth_exceeds(raw, JSON_MAX_DEPTH):
            raise ParseError(f"JSON parse error - nested deeper than {JSON_MAX_DEPTH} levels.")
        try:
            return super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:  # malformed nesting the check leaves to the parser
            raise ParseError(
                f"JSON parse error - nested deeper than {JSON_MAX_DEPTH} levels."
            ) from None
