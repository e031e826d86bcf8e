"""The apps package's errors: one root (``AppsError``), and below it ``AccessError`` for a caller
who may not do what they asked (it carries the HTTP status the API answers with)."""

from __future__ import annotations

from tongguan import TongguanError


class AppsError(TongguanError):
    """A view could not be built (bad configuration or bad request); the message says how to fix it."""


class AccessError(AppsError):
    """A caller asked for something outside their scope or role. ``status`` is the HTTP status
    the API answers with (401, 403, 404, 409, 422, 429)."""

    def __init__(self, message: str, status: int = 403, code: str = "forbidden"):
        super().__init__(message)
        self.status = status
        self.code = code


def not_found(what: str) -> AccessError:
    return AccessError(f"{what} not found (or not in your region)", 404, "not_found")
