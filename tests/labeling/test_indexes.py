"""Every index on the hot labeling tables earns its keep: each label write maintains all of them
(the PRM800K import writes a million labels), so none may be a leading prefix of another, and
no key gets PostgreSQL's second LIKE index unless it is searched by pattern."""

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's catalogue"),
]

TABLES = ("labeling_label", "labeling_task", "labeling_solution", "selector_solutionscore")


def indexes(table: str) -> list[tuple[str, list[str], bool, bool, str]]:
    """(name, columns, unique, partial, opclasses) of each index on ``table``."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.relname,
                   array(SELECT pg_get_indexdef(x.indexrelid, k, true)
                         FROM generate_subscripts(x.indkey, 1) AS k ORDER BY k),
                   x.indisunique, x.indpred IS NOT NULL, x.indclass::text
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relname = %s
            """,
            [table],
        )
        return [(name, list(cols), uniq, partial, cls) for name, cols, uniq, partial, cls in cursor]


@pytest.mark.parametrize("table", TABLES)
def test_no_index_is_a_leading_prefix_of_another(table):
    found = indexes(table)
    assert found, table
    redundant = [
        (name, other)
        for name, cols, unique, partial, _ in found
        for other, other_cols, _, other_partial, _ in found
        if name != other
        and not unique  # a unique index enforces something a longer one does not
        and not partial
        and not other_partial
        and other_cols[: len(cols)] == cols
    ]
    assert not redundant, redundant


def test_label_keys_have_no_pattern_index():
    names = [name for name, *_ in indexes("labeling_label")]
    assert not [n for n in names if n.endswith("_like")], names
    assert "label_idempotency_key_unique" in names
