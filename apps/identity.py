"""Who a caller is: users, roles, log-in checks and API tokens (接口鉴权), and the demo's users.

The web server's side of it (sessions, CSRF, the page guard) is ``apps.web``; the log-in pages
are ``apps.access_pages``.

- Passwords: Argon2id (``argon2-cffi``, its default parameters, rehashed on log-in when they
  change). Unknown user names cost the same verification as known ones.
- Lock-out: ``MAX_FAILURES`` failed log-ins in a row for one (user name, client address) lock
  that pair, for ``LOCK_MINUTES`` doubling with each further failure (at most ``MAX_LOCK_MINUTES``);
  the account stays open from other addresses, and a locked pair gets the same answer as a wrong
  password. Log-in is also rate-limited per client address (flask-limiter).
- Sessions and tokens end with a password change or a disable: the session version
  (``users.session_version``) is bumped, and tokens older than the last password change or
  disable are refused.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from apps import audit
from apps.access_models import ROLES
from apps.errors import AccessError
from apps.policy import tree_for
from apps.scope import Scope, unscoped

log = logging.getLogger(__name__)

MAX_FAILURES = 5
LOCK_MINUTES = 15
MAX_LOCK_MINUTES = 24 * 60
MIN_PASSWORD = 10
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}$")
TOKEN_PREFIX = "tg_"

_hasher = None


def hasher():
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
    return _hasher


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hasher().hash(secrets.token_hex(16))
    return _DUMMY_HASH


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- users
def _check_roles(roles) -> list[str]:
    roles = sorted({r.strip() for r in roles if r and r.strip()})
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise AccessError(f"roles must be among {', '.join(ROLES)} (got {', '.join(bad) or 'none'})", 422, "invalid")
    return roles


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccessError(f"a password needs at least {MIN_PASSWORD} characters", 422, "invalid")


def add_user(engine, username: str, password: str, *, home: str, roles=("viewer",),
             display_name: str = "") -> dict:
    """Create a user (home region + roles). Raises AccessError with the fix on bad input."""
    if not USERNAME_RE.match(username or ""):
        raise AccessError("user names are 2-64 characters: letters, digits and _ . @ -", 422, "invalid")
    roles = _check_roles(roles)
    _check_password(password)
    tree = tree_for(engine)
    if home not in tree:
        raise AccessError(f"unknown region {home!r}; load regions with `tongguan geo load` or check the adcode",
                          422, "invalid")
    with unscoped(), engine.begin() as conn:
        if conn.execute(sa.text("SELECT 1 FROM users WHERE username = :u"), {"u": username}).first():
            raise AccessError(f"user {username} exists; use `tongguan users reset-password`", 409, "conflict")
        uid = conn.execute(sa.text(
            "INSERT INTO users (username, display_name, home_adcode, roles, password_hash) "
            "VALUES (:u, :d, :h, :r, :p) RETURNING id"),
            {"u": username, "d": display_name, "h": home, "r": roles, "p": hasher().hash(password)}).scalar_one()
    return {"id": uid, "username": username, "home": home, "roles": roles}


def get_user(engine, username: str) -> dict | None:
    with unscoped(), engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM users WHERE username = :u"), {"u": username}).first()
    return dict(row._mapping) if row else None


def list_users(engine, *, within: str | None = None) -> list[dict]:
    """Users, optionally only those whose home lies in ``within``'s subtree (an admin's view)."""
    with unscoped(), engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT id, username, display_name, home_adcode, roles, active, failed_logins, locked_until, "
            "last_login_at, created_at FROM users ORDER BY username"))]
    for r in rows:
        r["home_adcode"] = r["home_adcode"].strip()
    if within:
        tree = tree_for(engine)
        rows = [r for r in rows if tree.is_within(r["home_adcode"], within)]
    return rows


def set_active(engine, username: str, active: bool) -> None:
    with unscoped(), engine.begin() as conn:
        n = conn.execute(sa.text(
            "UPDATE users SET active = :a, password_changed_at = CASE WHEN :a THEN password_changed_at "
            "ELSE now() END, session_version = session_version + CASE WHEN :a THEN 0 ELSE 1 END "
            "WHERE username = :u"), {"a": active, "u": username}).rowcount
    if not n:
        raise AccessError(f"no user {username}; see `tongguan users list`", 404, "not_found")


def reset_password(engine, username: str, password: str) -> None:
    """New password; unlocks the account and ends its sessions."""
    _check_password(password)
    with unscoped(), engine.begin() as conn:
        n = conn.execute(sa.text(
            "UPDATE users SET password_hash = :p, failed_logins = 0, locked_until = NULL, "
            "password_changed_at = now(), session_version = session_version + 1 WHERE username = :u"),
            {"p": hasher().hash(password), "u": username}).rowcount
        conn.execute(sa.text("DELETE FROM login_failures WHERE username = :u"), {"u": username})
    if not n:
        raise AccessError(f"no user {username}; see `tongguan users list`", 404, "not_found")


def scope_of(user: dict) -> Scope:
    return Scope(home=user["home_adcode"].strip(), roles=frozenset(user["roles"] or ()),
                 username=user["username"], user_id=user["id"])


WRONG = "wrong user name or password / 用户名或密码错误"


def _failure(engine, name: str, addr: str) -> int:
    """Count a failed log-in of (name, addr); the pair is locked from MAX_FAILURES on, for
    LOCK_MINUTES doubling with each further failure. A day without failures starts afresh."""
    with unscoped(), engine.begin() as conn:
        return conn.execute(sa.text(
            "INSERT INTO login_failures AS f (username, ip, failures) VALUES (:u, :ip, 1) "
            "ON CONFLICT (username, ip) DO UPDATE SET failures = CASE WHEN f.last_failure_at < now() - interval '1 day' "
            "THEN 1 ELSE f.failures + 1 END, last_failure_at = now() RETURNING failures"),
            {"u": name, "ip": addr}).scalar_one()


def _lock(engine, name: str, addr: str, failures: int) -> None:
    if failures < MAX_FAILURES:
        return
    minutes = min(MAX_LOCK_MINUTES, LOCK_MINUTES * 2 ** (failures - MAX_FAILURES))
    with unscoped(), engine.begin() as conn:
        conn.execute(sa.text("UPDATE login_failures SET locked_until = now() + make_interval(mins => :m) "
                             "WHERE username = :u AND ip = :ip"), {"m": minutes, "u": name, "ip": addr})


def _locked(engine, name: str, addr: str) -> bool:
    with unscoped(), engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT locked_until > now() FROM login_failures WHERE username = :u AND ip = :ip"),
            {"u": name, "ip": addr}).scalar())


def authenticate(engine, username: str, password: str, *, ip: str | None = None,
                 channel: str = "web") -> tuple[Scope, dict]:
    """Check a log-in; audited either way. Raises AccessError(401) with one answer for an unknown
    name, a wrong password, a disabled user and a locked (name, address) pair. Failures count
    towards that pair's lock; success clears it."""
    from argon2.exceptions import InvalidHashError, VerificationError

    name, addr = (username or "")[:64], (ip or "-")[:64]
    user = get_user(engine, username or "") if name == (username or "") else None
    reason = None
    if _locked(engine, name, addr):
        reason = "locked"
    elif user is None:
        reason = "unknown user"
    elif not user["active"]:
        reason = "disabled"
    if reason is not None:
        try:  # the same work as for a real user, so timing does not tell which names exist
            hasher().verify(_dummy_hash(), password or "")
        except VerificationError:
            pass
    else:
        try:
            hasher().verify(user["password_hash"], password or "")
        except (VerificationError, InvalidHashError):
            reason = "bad password"
    if reason is not None:
        failures = None
        if reason != "locked":
            failures = _failure(engine, name, addr)
            _lock(engine, name, addr, failures)
            if user is not None:
                with unscoped(), engine.begin() as conn:
                    conn.execute(sa.text("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = :id"),
                                 {"id": user["id"]})
        audit.record(engine, actor=name, user_id=user["id"] if user else None, action="login_failed",
                     region=user["home_adcode"].strip() if user else None,
                     outcome="denied" if reason == "locked" else "failed", channel=channel, ip=ip,
                     detail={"reason": reason, **({"failures": failures, "locked": failures >= MAX_FAILURES}
                                                  if failures else {})})
        raise AccessError(WRONG, 401, "unauthorized")
    new_hash = hasher().hash(password) if hasher().check_needs_rehash(user["password_hash"]) else None
    with unscoped(), engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = now(), "
            "password_hash = coalesce(:h, password_hash) WHERE id = :id"), {"h": new_hash, "id": user["id"]})
        conn.execute(sa.text("DELETE FROM login_failures WHERE username = :u AND ip = :ip"), {"u": name, "ip": addr})
    audit.record(engine, actor=user["username"], user_id=user["id"], action="login", region=user["home_adcode"].strip(),
                 channel=channel, ip=ip)
    return scope_of(user), user


def bump_session_version(engine, user_id: int) -> None:
    """End every session of the user (log-out: the saved cookie stops working too)."""
    with unscoped(), engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET session_version = session_version + 1 WHERE id = :id"),
                     {"id": int(user_id)})


# --------------------------------------------------------------------------- API tokens
def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(engine, username: str, name: str, *, days: int | None = None) -> dict:
    """A new API token for the user (shown once); scoped exactly like the user."""
    user = get_user(engine, username)
    if user is None:
        raise AccessError(f"no user {username}; see `tongguan users list`", 404, "not_found")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = _now() + timedelta(days=days) if days else None
    with unscoped(), engine.begin() as conn:
        tid = conn.execute(sa.text(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, expires_at) "
            "VALUES (:u, :n, :h, :p, :e) RETURNING id"),
            {"u": user["id"], "n": name or "token", "h": _token_hash(secret), "p": secret[:10],
             "e": expires}).scalar_one()
    return {"id": tid, "token": secret, "user": username, "name": name, "expires_at": expires}


def revoke_token(engine, token_id: int, *, username: str | None = None) -> dict:
    with unscoped(), engine.begin() as conn:
        row = conn.execute(sa.text(
            "UPDATE api_tokens t SET revoked_at = coalesce(revoked_at, now()) FROM users u "
            "WHERE t.id = :id AND u.id = t.user_id AND (CAST(:u AS text) IS NULL OR u.username = :u) "
            "RETURNING t.id, t.name, u.username, u.home_adcode"),
            {"id": int(token_id), "u": username}).first()
    if row is None:
        raise AccessError(f"no token {token_id}" + (f" of {username}" if username else ""), 404, "not_found")
    return {"id": row.id, "name": row.name, "user": row.username, "region": row.home_adcode.strip()}


def list_tokens(engine, username: str | None = None) -> list[dict]:
    with unscoped(), engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT t.id, u.username, t.name, t.prefix, t.created_at, t.expires_at, t.last_used_at, t.revoked_at "
            "FROM api_tokens t JOIN users u ON u.id = t.user_id "
            "WHERE CAST(:u AS text) IS NULL OR u.username = :u ORDER BY t.id"), {"u": username})]


def scope_for_token(engine, secret: str) -> Scope:
    """The scope of a valid, unrevoked, unexpired token of an active user; 401 otherwise."""
    if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise AccessError("invalid API token; create one with `tongguan tokens create`", 401, "unauthorized")
    with unscoped(), engine.begin() as conn:
        row = conn.execute(sa.text(
            "UPDATE api_tokens t SET last_used_at = now() FROM users u "
            "WHERE t.token_hash = :h AND u.id = t.user_id AND t.revoked_at IS NULL "
            "AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.active "
            "AND t.created_at > u.password_changed_at "
            "RETURNING u.id, u.username, u.home_adcode, u.roles"), {"h": _token_hash(secret)}).first()
    if row is None:
        raise AccessError("invalid, expired or revoked API token", 401, "unauthorized")
    return scope_of(dict(row._mapping))


# --------------------------------------------------------------------------- demo users
DEMO_USERS = (
    ("gd-admin", "440000", ("admin", "viewer"), "广东省管理员 Guangdong admin"),
    ("gz-operator", "440100", ("operator", "viewer"), "广州市值班员 Guangzhou operator"),
    ("tianhe-operator", "440106", ("operator", "viewer"), "天河区值班员 Tianhe operator"),
)


def create_demo_users(engine, password: str | None = None) -> list[dict]:
    """The demo's three users — a Guangdong province admin (440000), a Guangzhou operator
    (440100) and a Tianhe District operator (440106) — created or given a fresh password.
    Returns their log-ins (user name, password, region, roles) for the demo to print."""
    out = []
    for username, home, roles, display in DEMO_USERS:
        pw = password or secrets.token_urlsafe(12)
        if get_user(engine, username) is None:
            add_user(engine, username, pw, home=home, roles=roles, display_name=display)
        else:
            reset_password(engine, username, pw)
            set_active(engine, username, True)
        out.append({"username": username, "password": pw, "home": home, "roles": list(roles),
                    "display_name": display})
    return out


def format_logins(logins: list[dict]) -> str:
    return "\n".join(f"  {u['username']:<16} {u['password']:<20} {u['home']}  {','.join(u['roles'])}  "
                     f"{u['display_name']}" for u in logins)
