"""Streaming JSONL input shared by the importers: one line at a time, errors named by line."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any


@dataclass(frozen=True, order=True)
class LineError:
    line: int
    field: str
    message: str

    def format(self, source: str) -> str:
        return f"{source}:{self.line}: {self.field}: {self.message}"


class LineInvalid(ValueError):
    """Raised by a record parser: ``field`` is a dotted path into the record."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# Deeper than any record we read (PRM800K lines nest 6 levels), far below where Python's
# recursive decoder (and everything that walks the result) runs out of stack.
JSON_MAX_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")


class JsonTooDeep(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")


def json_depth_exceeds(raw: bytes, limit: int = JSON_MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``limit``, checked without parsing.

    Cheap for ordinary input (a count of opening brackets); otherwise strings are cut out and
    innermost pairs are removed one level per pass. Malformed text is left to the parser.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    for _ in range(limit):
        shorter = _INNERMOST_PAIR.sub(b"", brackets)
        if not shorter or len(shorter) == len(brackets):
            return False
        brackets = shorter
    return len(_INNERMOST_PAIR.sub(b"", brackets)) < len(brackets)


def json_loads_limited(raw: bytes, limit: int = JSON_MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``limit`` with ``JsonTooDeep``."""
    if json_depth_exceeds(raw, limit):
        raise JsonTooDeep(limit)
    try:
        return json.loads(raw)
    except RecursionError:  # belt and braces: a deep stack at the call site
        raise JsonTooDeep(limit) from None


def utf8_error(exc: UnicodeDecodeError, offset: int = 0) -> str:
    """What a line that is not UTF-8 gets: where its first bad byte is in the file."""
    return f"not UTF-8 text at byte {offset + exc.start} ({exc.reason})"


@contextmanager
def jsonl_open(path: str) -> Iterator[tuple[IO[bytes], str, int | None]]:
    """``(binary stream, display name, size in bytes or None)`` for a path, ``-`` is stdin."""
    if path == "-":
        yield sys.stdin.buffer, "<stdin>", None
        return
    with open(path, "rb") as stream:
        try:
            size: int | None = os.fstat(stream.fileno()).st_size
        except OSError:
            size = None
        yield stream, path, size


def jsonl_records(
    stream: IO[bytes], *, progress: Callable[[int], object] | None = None
) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    """Yield ``(line number, object)`` per non-blank line, or a ``LineError`` for a bad one.

    ``progress`` gets the bytes consumed by each line, so a byte-sized progress bar advances.
    """
    offset = 0  # of the line in the stream, so a bad byte is named where it is
    for number, raw in enumerate(stream, start=1):
        start, offset = offset, offset + len(raw)
        if progress:
            progress(len(raw))
        if not raw.strip():
            continue
        try:
            raw.decode("utf-8")  # JSON is UTF-8 (json.loads would guess UTF-16 from a BOM)
            record = json_loads_limited(raw)
        except JsonTooDeep as exc:
            yield number, LineError(number, "line", f"invalid JSON: {exc}")
            continue
        except UnicodeDecodeError as exc:
            yield number, LineError(number, "line", utf8_error(exc, start))
            continue
        except json.JSONDecodeError as exc:
            yield (
                number,
                LineError(number, "line", f"invalid JSON: {exc.msg} at column {exc.colno}"),
            )
            continue
        if not isinstance(record, dict):
            yield number, LineError(number, "line", "expected a JSON object")
            continue
        # PostgreSQL cannot store U+0000 in text or JSON: refused here, by field, on every
        # database alike (the bytes test keeps the walk off ordinary lines).
        if b"\\u0000" in raw and (where := nul_path(record)) is not None:
            yield number, LineError(number, where, "must not contain the NUL character (\\u0000)")
            continue
        yield number, record


def nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) in ``value`` that holds U+0000, or None."""
    if isinstance(value, str):
        return (path or "line") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return path or "line"
            if (found := nul_path(item, where)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := nul_path(item, f"{path}[{i}]")) is not None:
                return found
    return None


# Small typed accessors that raise LineInvalid naming the field: the importers' validators.


def req_str(record: dict[str, Any], key: str, *, prefix: str = "", nonempty: bool = False) -> str:
    name = prefix + key
    if key not in record:
        raise LineInvalid(name, "is required")
    value = record[key]
    if not isinstance(value, str):
        raise LineInvalid(name, f"must be a string, got {type_name(value)}")
    if nonempty and not value.strip():
        raise LineInvalid(name, "must not be empty")
    return value


def opt_str(record: dict[str, Any], key: str, *, prefix: str = "", max_length: int = 0) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LineInvalid(prefix + key, f"must be a string, got {type_name(value)}")
    if max_length and len(value) > max_length:
        raise LineInvalid(prefix + key, f"must be at most {max_length} characters")
    return value


def str_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise LineInvalid(name, "must be a non-empty list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise LineInvalid(f"{name}[{i}]", f"must be a string, got {type_name(item)}")
    return value


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", bool: "boolean", str: "string"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )
