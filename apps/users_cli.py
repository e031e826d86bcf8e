"""``tongguan users add|list|disable|enable|reset-password|demo``, ``tongguan tokens
create|list|revoke`` and ``tongguan audit``: account and audit operations for scripts and admins.

Every change made here is written to the audit log with channel ``cli``.
"""

from __future__ import annotations

import getpass
import json
import os
import sys


def register(sub) -> None:
    users = sub.add_parser("users", help="user accounts: add, list, disable, enable, reset-password, demo")
    us = users.add_subparsers(dest="users_command", metavar="ACTION")
    us.required = True
    p = us.add_parser("add", help="create a user with a home region and roles")
    p.add_argument("username")
    p.add_argument("--region", required=True, help="home region adcode, e.g. 440106 (天河区)")
    p.add_argument("--roles", default="viewer", help="comma-separated: viewer, operator, admin")
    p.add_argument("--name", default="", help="display name")
    p.add_argument("--password-env", metavar="VAR",
                   help="read the password from this environment variable (else asked, or generated with --generate)")
    p.add_argument("--generate", action="store_true", help="generate a password and print it once")
    p.set_defaults(func=cmd_add)
    p = us.add_parser("list", help="list users (optionally those of one region's subtree)")
    p.add_argument("--region", help="only users whose home lies in this region's subtree")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    for name, active in (("disable", False), ("enable", True)):
        p = us.add_parser(name, help=f"{name} a user (disabling ends their sessions and tokens' use)")
        p.add_argument("username")
        p.set_defaults(func=cmd_active, active=active)
    p = us.add_parser("reset-password", help="set a new password (unlocks; ends sessions)")
    p.add_argument("username")
    p.add_argument("--password-env", metavar="VAR")
    p.add_argument("--generate", action="store_true")
    p.set_defaults(func=cmd_reset)
    p = us.add_parser("demo", help="create the demo users (province admin, Guangzhou and Tianhe operators)")
    p.set_defaults(func=cmd_demo)

    tokens = sub.add_parser("tokens", help="API tokens: create, list, revoke")
    ts = tokens.add_subparsers(dest="tokens_command", metavar="ACTION")
    ts.required = True
    p = ts.add_parser("create", help="create an API token for a user (printed once)")
    p.add_argument("username")
    p.add_argument("--name", default="api", help="what the token is for, e.g. 12345-hotline")
    p.add_argument("--days", type=int, help="expire after this many days")
    p.set_defaults(func=cmd_token_create)
    p = ts.add_parser("list", help="list tokens (never their secrets)")
    p.add_argument("--user")
    p.set_defaults(func=cmd_token_list)
    p = ts.add_parser("revoke", help="revoke a token by its id")
    p.add_argument("token_id", type=int)
    p.set_defaults(func=cmd_token_revoke)

    p = sub.add_parser("audit", help="query the audit log (newest first)")
    p.add_argument("--as", dest="as_user", help="only what this admin may read (their region's subtree)")
    p.add_argument("--region", help="entries of this region's subtree")
    p.add_argument("--actor")
    p.add_argument("--action", help="action name, * as wildcard (alert_*)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)


def _engine(ctx):
    return ctx.engine


def _password(args, confirm: bool = True) -> tuple[str, bool]:
    import secrets

    from apps.errors import AccessError

    if getattr(args, "generate", False):
        return secrets.token_urlsafe(12), True
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise AccessError(f"environment variable {args.password_env} is empty or unset")
        return value, False
    if not sys.stdin.isatty():
        raise AccessError("no terminal to ask for a password: use --password-env VAR or --generate")
    pw = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != pw:
        raise AccessError("the passwords differ")
    return pw, False


def _audit(ctx, action: str, target: str, region: str | None = None, **detail) -> None:
    from apps import audit

    audit.record(_engine(ctx), actor=f"cli:{getpass.getuser()}", action=action, region=region, target=target,
                 channel="cli", detail=detail)


def cmd_add(args, ctx) -> int:
    from apps.identity import add_user

    pw, generated = _password(args)
    u = add_user(_engine(ctx), args.username, pw, home=args.region, roles=args.roles.split(","),
                 display_name=args.name)
    _audit(ctx, "user_add", args.username, args.region, roles=u["roles"])
    print(f"user {u['username']} (id {u['id']}) home {u['home']} roles {','.join(u['roles'])}")
    if generated:
        print(f"password: {pw}")
    return 0


def cmd_list(args, ctx) -> int:
    from apps.identity import list_users

    rows = list_users(_engine(ctx), within=args.region)
    if args.json:
        print(json.dumps(rows, default=str, ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        state = "active" if r["active"] else "disabled"
        if r["locked_until"]:
            state += f", locked until {r['locked_until']:%Y-%m-%d %H:%M}"
        print(f"{r['username']:<20} {r['home_adcode']}  {','.join(r['roles']):<22} {state}  {r['display_name']}")
    return 0


def cmd_active(args, ctx) -> int:
    from apps.identity import get_user, set_active

    set_active(_engine(ctx), args.username, args.active)
    u = get_user(_engine(ctx), args.username)
    _audit(ctx, "user_enable" if args.active else "user_disable", args.username, u["home_adcode"].strip())
    print(f"user {args.username} {'enabled' if args.active else 'disabled'}")
    return 0


def cmd_reset(args, ctx) -> int:
    from apps.identity import get_user, reset_password

    pw, generated = _password(args)
    reset_password(_engine(ctx), args.username, pw)
    u = get_user(_engine(ctx), args.username)
    _audit(ctx, "user_reset_password", args.username, u["home_adcode"].strip())
    print(f"password of {args.username} reset" + (f": {pw}" if generated else ""))
    return 0


def cmd_demo(args, ctx) -> int:
    from apps.identity import create_demo_users, format_logins

    logins = create_demo_users(_engine(ctx))
    for u in logins:
        _audit(ctx, "user_demo", u["username"], u["home"])
    print("demo log-ins (user, password, region, roles):")
    print(format_logins(logins))
    return 0


def cmd_token_create(args, ctx) -> int:
    from apps.identity import create_token, get_user

    t = create_token(_engine(ctx), args.username, args.name, days=args.days)
    u = get_user(_engine(ctx), args.username)
    _audit(ctx, "token_create", f"{args.username}#{t['id']}", u["home_adcode"].strip(), name=args.name)
    print(f"token {t['id']} for {args.username} ({args.name})"
          + (f", expires {t['expires_at']:%Y-%m-%d}" if t["expires_at"] else "") + ":")
    print(t["token"])
    return 0


def cmd_token_list(args, ctx) -> int:
    from apps.identity import list_tokens

    for t in list_tokens(_engine(ctx), args.user):
        state = "revoked" if t["revoked_at"] else "active"
        print(f"{t['id']:>5} {t['username']:<20} {t['name']:<20} {t['prefix']}…  {state}"
              f"  last used {t['last_used_at'] or '-'}")
    return 0


def cmd_token_revoke(args, ctx) -> int:
    from apps.identity import revoke_token

    t = revoke_token(_engine(ctx), args.token_id)
    _audit(ctx, "token_revoke", f"{t['user']}#{t['id']}", t["region"])
    print(f"token {t['id']} of {t['user']} revoked")
    return 0


def cmd_audit(args, ctx) -> int:
    from apps import audit
    from apps.errors import AccessError
    from apps.identity import get_user, scope_of

    scope = None
    if args.as_user:
        u = get_user(_engine(ctx), args.as_user)
        if u is None:
            raise AccessError(f"no user {args.as_user}; see `tongguan users list`")
        scope = scope_of(u)
    rows, total = audit.query(_engine(ctx), scope=scope, region=args.region, actor=args.actor,
                              action=args.action, limit=args.limit)
    if args.json:
        print(json.dumps({"total": total, "items": rows}, default=str, ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        print(f"{r['ts'][:19]}  {r['actor']:<18} {r['action']:<20} {r['region'] or '-':<6} "
              f"{r['outcome']:<7} {r['channel']:<4} {r['target'] or ''}")
    print(f"({len(rows)} of {total})")
    return 0
