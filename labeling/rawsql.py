"""Hand-written SELECTs for the few queries every claim and submit make (decision 0009).

Django compiles a queryset on every execution: 1-3 ms of Python for one with a few subqueries,
which was most of a claim's CPU time. The hot reads are therefore written once as SQL that
both SQLite and PostgreSQL accept, and their rows are turned into model instances here with
the same converters the ORM applies (booleans and UUIDs on SQLite, JSON everywhere).
"""

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model
from django.db.models.expressions import Col

M = TypeVar("M", bound=Model)
Converter = Callable[[Any, Any, Any], Any]


def columns(model: type[Model], alias: str) -> str:
    """``alias.col, …`` for every concrete field, in the order :func:`instance` reads them."""
    return ", ".join(f"{alias}.{field.column}" for field in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


@cache
def _converters(model: type[Model], vendor: str) -> tuple[tuple[tuple[Converter, Col], ...], ...]:
    del vendor  # part of the cache key: the backend decides the converters
    per_field = []
    for field in model._meta.concrete_fields:
        col = Col(model._meta.db_table, field)
        found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        per_field.append(tuple((converter, col) for converter in found))
    return tuple(per_field)


def instance(model: type[M], values: Sequence[Any]) -> M:
    """A model instance from a row slice holding :func:`columns` of ``model``."""
    converted = []
    for value, converters in zip(values, _converters(model, connection.vendor), strict=True):
        for converter, col in converters:
            value = converter(value, col, connection)
        converted.append(value)
    return model.from_db(
        connection.alias, [field.attname for field in model._meta.concrete_fields], converted
    )


def datetime_param(value: Any) -> Any:
    """A datetime as this backend's driver takes it (SQLite stores text)."""
    return connection.ops.adapt_datetimefield_value(value)
