"""access: the scope claim is verified once per statement, not once per row

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

The row-level-security policies called ``tongguan_in_scope(province, city, county)``,
``tongguan_region_in_scope(adcode)`` and ``tongguan_operator()`` on every row. Each of them reads
the signed scope claim through ``tongguan_claims()`` (a PL/pgSQL HMAC check), and a SQL function
whose body holds a sub-select is never inlined, so the "sub-select makes it an InitPlan" of 0012
did not happen inside them: the claim was verified per row. A province user counting 4,874
sensors paid 0.1 ms a row (460 ms for the count, 3 ms without row-level security); every query
over many rows paid the same.

Now each policy reads the claim in a sub-select of its own qual — ``(SELECT tongguan_scope())``,
``(SELECT tongguan_operator())`` — which PostgreSQL runs once per statement as an InitPlan, and
passes the scope to plain functions of the row's columns (``tongguan_in_scope_as`` is a single
expression, so it is inlined and stays index-friendly). What a policy allows is unchanged: the same
claim, the same comparison; only when it is computed moves. The old functions stay for callers.
"""
import re

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SCOPED = "tongguan_scoped"

# A call of one of the claim readers that is not already the whole of a sub-select.
_BARE = r"(?<!SELECT )"
UPGRADE = (
    (re.compile(r"\btongguan_in_scope\("), "tongguan_in_scope_as((SELECT tongguan_scope()), "),
    (re.compile(r"\btongguan_region_in_scope\("), "tongguan_region_in_scope_as((SELECT tongguan_scope()), "),
    (re.compile(_BARE + r"\btongguan_operator\(\)"), "(SELECT tongguan_operator())"),
    (re.compile(_BARE + r"\btongguan_scope\(\)"), "(SELECT tongguan_scope())"),
)
DOWNGRADE = (
    (re.compile(r"\btongguan_in_scope_as\(\(\s*SELECT tongguan_scope\(\)(?: AS tongguan_scope)?\s*\), "),
     "tongguan_in_scope("),
    (re.compile(r"\btongguan_region_in_scope_as\(\(\s*SELECT tongguan_scope\(\)(?: AS tongguan_scope)?\s*\), "),
     "tongguan_region_in_scope("),
)


def _rewrite(expr: str | None, rules) -> str | None:
    if expr is None:
        return None
    for pattern, replacement in rules:
        expr = pattern.sub(replacement, expr)
    return expr


def _alter_policies(rules) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT tablename, policyname, qual, with_check FROM pg_policies "
        "WHERE schemaname = 'public' AND :role = ANY(roles)"), {"role": SCOPED}).all()
    for table, name, qual, check in rows:
        new_qual, new_check = _rewrite(qual, rules), _rewrite(check, rules)
        if (new_qual, new_check) == (qual, check):
            continue
        clauses = []
        if new_qual is not None:
            clauses.append(f"USING ({new_qual})")
        if new_check is not None:
            clauses.append(f"WITH CHECK ({new_check})")
        op.execute(f'ALTER POLICY "{name}" ON "{table}" ' + " ".join(clauses))


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION tongguan_in_scope_as(scope text, province text, city text, county text) RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT scope IN (province, city, county) $$;
    """)
    op.execute("""
        CREATE FUNCTION tongguan_region_in_scope_as(scope text, code text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT code IS NOT NULL AND (code = scope OR EXISTS (
                SELECT 1 FROM regions r
                WHERE r.adcode = code::char(6)
                  AND (r.parent = scope::char(6)
                       OR r.parent IN (SELECT c.adcode FROM regions c WHERE c.parent = scope::char(6)))))
        $$;
    """)
    _alter_policies(UPGRADE)


def downgrade() -> None:
    _alter_policies(DOWNGRADE)
    op.execute("DROP FUNCTION tongguan_region_in_scope_as(text, text)")
    op.execute("DROP FUNCTION tongguan_in_scope_as(text, text, text, text)")
