"""One exception hierarchy for the whole server.

Every error a client can cause is a :class:`ClientError` carrying the protocol
code of the contract's error table; the single boundary where requests arrive
turns it into an ``error`` answer. Anything else that escapes a handler is a
bug: it is logged with the request id and answered ``internal``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RoomServerError(Exception):
    """Base of every error raised on purpose by roomserver."""


class ClientError(RoomServerError):
    """An error answered to the client with a protocol code; the connection stays open."""

    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ")
        self.extra = extra

    def to_wire(self, request_id: Any) -> dict[str, Any]:
        """The ``error`` answer for the request ``request_id``."""
        out: dict[str, Any] = {
            "t": "error",
            "id": request_id,
            "code": self.code,
            "message": self.message,
        }
        out.update(self.extra)
        return out


class BadRequest(ClientError):
    code = "bad_request"


class UnknownType(ClientError):
    code = "unknown_type"


class Unauthorized(ClientError):
    code = "unauthorized"


class Forbidden(ClientError):
    code = "forbidden"


class NotJoined(ClientError):
    code = "not_joined"


class NotFound(ClientError):
    code = "not_found"


class RateLimited(ClientError):
    code = "rate_limited"

    def __init__(self, retry_after_ms: int, message: str = "too many requests") -> None:
        super().__init__(message, retry_after_ms=retry_after_ms)
        self.retry_after_ms = retry_after_ms


class Blocked(ClientError):
    code = "blocked"


class Muted(ClientError):
    code = "muted"

    def __init__(self, until: int, message: str = "you are muted") -> None:
        super().__init__(message, until=until)
        self.until = until


class Banned(ClientError):
    code = "banned"


class AlreadyVoted(ClientError):
    code = "already_voted"


class PollClosed(ClientError):
    code = "poll_closed"


class CohostFull(ClientError):
    code = "cohost_full"


class NotInvited(ClientError):
    code = "not_invited"


class PkBusy(ClientError):
    """A roomserver addition: the room is in a PK battle or has an invitation pending."""

    code = "pk_busy"


class Unavailable(ClientError):
    code = "unavailable"


class Internal(ClientError):
    code = "internal"


_CLASSES: tuple[type[ClientError], ...] = (
    BadRequest,
    UnknownType,
    Unauthorized,
    Forbidden,
    NotJoined,
    NotFound,
    RateLimited,
    Blocked,
    Muted,
    Banned,
    AlreadyVoted,
    PollClosed,
    CohostFull,
    NotInvited,
    Unavailable,
    Internal,
)

#: Every protocol error code, for metrics and documentation.
ERROR_CODES: tuple[str, ...] = tuple(cls.code for cls in _CLASSES)
_BY_CODE: dict[str, type[ClientError]] = {cls.code: cls for cls in _CLASSES}


def error_from_wire(code: str, message: str, extra: dict[str, Any]) -> ClientError:
    """Rebuild a client error answered by another node, with the same code."""
    error = ClientError.__new__(_BY_CODE.get(code, Internal))
    ClientError.__init__(error, message, **extra)
    return error
