"""alerting: region status kept by commutative increments; continuation of returning conditions

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

0005 recomputed a region's status row from the roll-up after each change. Two transactions
changing alerts of the same region at once could each compute it without the other's uncommitted
delta, and the later write won: a stale total until the next change. Now every column is an
increment (per-level counters, open total, unacknowledged) applied under the row's lock, and the
worst level is a generated column of the counters — exact whatever the interleaving.

Returning conditions: the live detector opens a new alert (a new id) when a condition comes back
after it was resolved. ``alert_handling.continues`` links such an alert to the resolved one it
continues (within the reopen window), so the case keeps its owner, escalation and dispatch;
``continuity_checked`` makes that check once per alert, and a partial index on the finished
alerts' dedupe key keeps it cheap.
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPLY = """
CREATE OR REPLACE FUNCTION alerting_rollup_apply(deltas jsonb) RETURNS void LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF deltas IS NULL OR jsonb_array_length(deltas) = 0 THEN
        RETURN;
    END IF;
    -- One statement: the per-region deltas feed both tables (the roll-up, then the status row).
    WITH d AS (
        SELECT x->>'adcode' AS adcode, x->>'city' AS city, x->>'province' AS province,
               x->>'theme' AS theme, x->>'level' AS level, x->>'status' AS status,
               (x->>'delta')::int AS delta
        FROM jsonb_array_elements(deltas) AS x
    ), e AS (
        SELECT adcode AS region, 'county' AS region_level, city AS parent, theme, level, status, delta FROM d
        UNION ALL
        SELECT city, 'city', province, theme, level, status, delta FROM d WHERE city <> adcode
        UNION ALL
        SELECT province, 'province', NULL, theme, level, status, delta FROM d WHERE province <> city
    ), agg AS (
        SELECT region, min(region_level) AS region_level, min(parent) AS parent, theme, level, status,
               sum(delta)::int AS n
        FROM e GROUP BY region, theme, level, status HAVING sum(delta) <> 0
    ), rolled AS (
        INSERT INTO alert_rollup AS r (adcode, region_level, parent, theme, level, status, n, updated_at)
        SELECT region, region_level, parent, theme, level, status, n, now() FROM agg
        ORDER BY region, theme, level, status
        ON CONFLICT (adcode, theme, level, status)
        DO UPDATE SET n = r.n + EXCLUDED.n, updated_at = now()
        RETURNING 1
    )
    INSERT INTO region_alert_status AS s (adcode, region_level, parent, open_total, unacknowledged,
                                          n_blue, n_yellow, n_orange, n_red, updated_at)
    SELECT region, min(region_level), min(parent), sum(n)::int,
           coalesce(sum(n) FILTER (WHERE status = 'open'), 0)::int,
           coalesce(sum(n) FILTER (WHERE level = 'blue'), 0)::int,
           coalesce(sum(n) FILTER (WHERE level = 'yellow'), 0)::int,
           coalesce(sum(n) FILTER (WHERE level = 'orange'), 0)::int,
           coalesce(sum(n) FILTER (WHERE level = 'red'), 0)::int, now()
    FROM agg GROUP BY region ORDER BY region
    ON CONFLICT (adcode) DO UPDATE SET
        open_total = s.open_total + EXCLUDED.open_total,
        unacknowledged = s.unacknowledged + EXCLUDED.unacknowledged,
        n_blue = s.n_blue + EXCLUDED.n_blue, n_yellow = s.n_yellow + EXCLUDED.n_yellow,
        n_orange = s.n_orange + EXCLUDED.n_orange, n_red = s.n_red + EXCLUDED.n_red,
        updated_at = now();
END $$;
"""

def upgrade() -> None:
    for lv in ("blue", "yellow", "orange", "red"):
        op.execute(f"ALTER TABLE region_alert_status ADD COLUMN n_{lv} integer NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE region_alert_status DROP COLUMN worst_level")
    op.execute("""ALTER TABLE region_alert_status ADD COLUMN worst_level text GENERATED ALWAYS AS (
        CASE WHEN n_red > 0 THEN 'red' WHEN n_orange > 0 THEN 'orange' WHEN n_yellow > 0 THEN 'yellow'
             WHEN n_blue > 0 THEN 'blue' END) STORED""")
    # Counters of the alerts already there, from the (exact) roll-up.
    op.execute("""
        UPDATE region_alert_status s SET
            open_total = q.total, unacknowledged = q.unack, n_blue = q.b, n_yellow = q.y, n_orange = q.o, n_red = q.r
        FROM (SELECT adcode, sum(n)::int AS total, coalesce(sum(n) FILTER (WHERE status = 'open'), 0)::int AS unack,
                     coalesce(sum(n) FILTER (WHERE level = 'blue'), 0)::int AS b,
                     coalesce(sum(n) FILTER (WHERE level = 'yellow'), 0)::int AS y,
                     coalesce(sum(n) FILTER (WHERE level = 'orange'), 0)::int AS o,
                     coalesce(sum(n) FILTER (WHERE level = 'red'), 0)::int AS r
              FROM alert_rollup GROUP BY adcode) q
        WHERE q.adcode = s.adcode
    """)
    op.execute(APPLY)
    op.execute("ALTER TABLE alert_handling ADD COLUMN continues text")
    op.execute("ALTER TABLE alert_handling ADD COLUMN continuity_checked boolean NOT NULL DEFAULT false")
    op.execute("CREATE INDEX ix_alerts_dedupe_key_finished ON alerts (dedupe_key) "
               "WHERE status IN ('resolved', 'closed')")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_alerts_dedupe_key_finished")
    op.execute("ALTER TABLE alert_handling DROP COLUMN continuity_checked")
    op.execute("ALTER TABLE alert_handling DROP COLUMN continues")
    import importlib

    v5 = importlib.import_module("tongguan.migrations.versions.0005_alerting")
    op.execute("DROP FUNCTION alerting_rollup_apply(jsonb)")
    op.execute(v5.APPLY)
    op.execute("ALTER TABLE region_alert_status DROP COLUMN worst_level")
    for lv in ("blue", "yellow", "orange", "red"):
        op.execute(f"ALTER TABLE region_alert_status DROP COLUMN n_{lv}")
    op.execute("ALTER TABLE region_alert_status ADD COLUMN worst_level text")
    op.execute("""UPDATE region_alert_status s SET worst_level = (SELECT level FROM alert_rollup r
                  WHERE r.adcode = s.adcode AND r.n > 0 ORDER BY CASE r.level WHEN 'red' THEN 4
                  WHEN 'orange' THEN 3 WHEN 'yellow' THEN 2 ELSE 1 END DESC LIMIT 1)""")
