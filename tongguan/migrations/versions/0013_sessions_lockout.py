"""access: server-side session versions; log-in failures counted per (user name, address)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

- ``users.session_version``: the session cookie carries the version it was issued under; log-out,
  a password change and disabling the user bump it, so every earlier cookie stops working at once
  — in every server process, since the version lives in the database.
- ``login_failures``: failed log-ins per (user name, client address), with an exponential lock of
  that pair only. Five wrong passwords from one address no longer lock the account for everybody
  (the province admin included), and a locked pair gets the same answer as a wrong password, so
  the answer does not tell which user names exist.
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("session_version", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "login_failures",
        sa.Column("username", sa.Text, nullable=False, comment="as typed (unknown names too)"),
        sa.Column("ip", sa.Text, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("username", "ip", name="pk_login_failures"),
    )
    # Readable and writable only by an unscoped app connection (and the owner): the service
    # roles' policies come from tongguan_grant_service_roles() after the upgrade.
    op.execute("ALTER TABLE login_failures ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_column("users", "session_version")
