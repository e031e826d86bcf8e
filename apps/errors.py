"""The apps package's errors: one root (``AppsError``), and below it ``AccessError`` for a caller
who may not do what they asked (it carries the HTTP status the API answers with)."""

from __future__ import annotations

from tongguan import TongguanError


class AppsError(TongguanError):
    """A view could not be built (bad configuration or bad request); the message says how to fix
    it. ``key`` and ``params`` name the reason for the views (``refusal.<key>``, said in the
    user's language by :func:`apps.i18n.user_message`); a policy Reason as the message brings its own."""

    def __init__(self, message: str, key: str | None = None, **params):
        super().__init__(message)
        self.key = key or getattr(message, "key", None)
        self.params = params or dict(getattr(message, "params", None) or {})


class AccessError(AppsError):
    """A caller asked for something outside their scope or role. ``status`` is the HTTP status
    the API answers with (401, 403, 404, 409, 422, 429)."""

    def __init__(self, message: str, status: int = 403, code: str = "forbidden", key: str | None = None,
                 **params):
        super().__init__(message, key, **params)
        self.status = status
        self.code = code


def not_found(what: str) -> AccessError:
    kind, _, ident = what.partition(" ")  # "alert AP-1"
    return AccessError(f"{what} not found (or not in your region)", 404, "not_found", "not_found", kind=kind,
                       ident=ident)
