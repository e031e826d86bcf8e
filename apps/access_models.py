"""Tables of access control (schema: migration 0006): users, API tokens, the audit log.

Passwords are stored as Argon2id hashes (``argon2-cffi``); API tokens only as the SHA-256 of a
256-bit random secret (a token is not a password: it has full entropy, so a fast hash is enough
and lets the server look a token up by its hash). The audit log is append-only: a trigger
refuses UPDATE and DELETE, so nobody can rewrite who did what, the application included.
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from tongguan.db import metadata

ROLES = ("viewer", "operator", "admin")

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("username", sa.Text, nullable=False, unique=True),
    sa.Column("display_name", sa.Text, nullable=False, server_default=""),
    sa.Column("home_adcode", sa.CHAR(6), sa.ForeignKey("regions.adcode"), nullable=False,
              comment="the user sees and handles this region's subtree"),
    sa.Column("roles", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{viewer}'::text[]")),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("session_version", sa.Integer, nullable=False, server_default="0"),  # migration 0013
    sa.CheckConstraint("roles <@ ARRAY['viewer','operator','admin']::text[]", name="roles"),
    sa.Index("ix_users_home_adcode", "home_adcode"),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True, comment="sha256 hex of the secret"),
    sa.Column("prefix", sa.Text, nullable=False, comment="first characters, to recognise a token"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_api_tokens_user_id", "user_id"),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("actor", sa.Text, nullable=False, comment="user name, or the name tried at a failed log-in"),
    sa.Column("user_id", sa.BigInteger, nullable=True),
    sa.Column("action", sa.Text, nullable=False,
              comment="login | login_failed | logout | view_region | alert_<action> | subscription_<op> | "
                      "token_<op> | user_<op> | denied"),
    sa.Column("region", sa.CHAR(6), nullable=True, comment="the region concerned (scopes who may read it)"),
    sa.Column("target", sa.Text, nullable=True, comment="alert id, subscription id, user name, URL …"),
    sa.Column("outcome", sa.Text, nullable=False, server_default="ok"),
    sa.Column("channel", sa.Text, nullable=False, server_default="web", comment="web | api | cli"),
    sa.Column("ip", sa.Text, nullable=True),
    sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.CheckConstraint("outcome IN ('ok','denied','failed','error')", name="outcome"),
    sa.Index("ix_audit_log_ts", "ts"),
    sa.Index("ix_audit_log_region_ts", "region", "ts"),
    sa.Index("ix_audit_log_actor_ts", "actor", "ts"),
)
