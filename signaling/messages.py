"""Typed client requests of the room protocol, validated once at the edge.

Invariants kept here:

- :func:`parse_request` turns one decoded frame into exactly one frozen request
  dataclass, or raises a :class:`~roomserver.errors.ClientError`:
  ``BadRequest`` (code ``bad_request``) whose message starts with the name of
  the offending field, or ``UnknownType`` (code ``unknown_type``). It never
  raises anything else, whatever the input, so the connection loop can answer
  every frame.
- Every value in a returned request is already within the ranges of the
  contract (ids 1-64 characters, text trimmed and 1-2000 characters, ...), so
  the rest of the server never re-checks shape, only meaning (does the poll
  exist, may this role do it).
- Integers are real integers: ``bool`` and ``float`` (even ``5.0``) are refused,
  so ``true`` never becomes ``1`` and ``NaN`` never reaches a comparison.
- An absent field and a field set to ``null`` are the same; an optional field
  left out takes the default declared on its dataclass, the single place the
  defaults live. Unknown extra fields are ignored (clients may be newer).
- Each request type is its own class with a ``ClassVar`` ``t``, so handlers can
  ``match`` on the class; the validation itself is a table of small field
  validators per type rather than one hand-written branch per request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from roomserver.errors import BadRequest, UnknownType
from roomserver.pk import MAX_DURATION_S as PK_MAX_DURATION_S
from roomserver.pk import MIN_DURATION_S as PK_MIN_DURATION_S

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "MAX_ID_CHARS",
    "MAX_INT",
    "MAX_SDP_CHARS",
    "MAX_TEXT_CHARS",
    "REQUEST_TYPES",
    "ChatHistory",
    "ChatRead",
    "ChatReaders",
    "ChatSend",
    "CohostAccept",
    "CohostDecline",
    "CohostEnd",
    "CohostInvite",
    "CohostRequest",
    "Join",
    "Leave",
    "Like",
    "ModBan",
    "ModDelete",
    "ModKick",
    "ModMute",
    "Ping",
    "PkAccept",
    "PkDecline",
    "PkEnd",
    "PkInvite",
    "PollClose",
    "PollCreate",
    "PollVote",
    "Product",
    "ProductPin",
    "ProductUnpin",
    "RecAuto",
    "RecStart",
    "RecStop",
    "Request",
    "RequestId",
    "RoomEnd",
    "RoomRequest",
    "RtcPublish",
    "RtcSubscribe",
    "RtcUnpublish",
    "RtcUnsubscribe",
    "parse_request",
    "request_id_of",
]

RequestId: TypeAlias = int | str

#: Largest magnitude of an integer request id, and the upper bound of every
#: unbounded integer field: beyond it a JavaScript client loses precision.
MAX_INT = 2**53
#: Length limit of request ids and of every protocol id (room, user, poll, cid...).
MAX_ID_CHARS = 64
MAX_TOKEN_CHARS = 4096
MAX_TEXT_CHARS = 2000
MAX_QUESTION_CHARS = 300
MAX_OPTION_CHARS = 100
MIN_OPTIONS = 2
MAX_OPTIONS = 10
MAX_POLL_DURATION_S = 86400
MAX_HISTORY_LIMIT = 200
DEFAULT_HISTORY_LIMIT = 50
MAX_LIKES = 50
MAX_MUTE_S = 86400
MAX_SDP_CHARS = 20000
MAX_PRODUCT_TITLE_CHARS = 200
MAX_PRICE_CHARS = 32
MAX_URL_CHARS = 2048


# --- records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Product:
    """A pinned product; prices arrive as strings or numbers and are kept as strings."""

    id: str
    title: str
    price: str | None = None
    currency: str | None = None
    url: str | None = None
    image: str | None = None

    def to_wire(self) -> dict[str, str]:
        """The wire object with only the fields that are present."""
        out = {"id": self.id, "title": self.title}
        if self.price is not None:
            out["price"] = self.price
        if self.currency is not None:
            out["currency"] = self.currency
        if self.url is not None:
            out["url"] = self.url
        if self.image is not None:
            out["image"] = self.image
        return out


@dataclass(frozen=True, slots=True)
class Join:
    t: ClassVar[str] = "join"
    id: RequestId
    room: str
    token: str
    since: int | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    t: ClassVar[str] = "leave"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class ChatSend:
    t: ClassVar[str] = "chat.send"
    id: RequestId
    room: str
    text: str
    cid: str


@dataclass(frozen=True, slots=True)
class ChatHistory:
    """At most one of ``before`` / ``after``; neither means the latest messages."""

    t: ClassVar[str] = "chat.history"
    id: RequestId
    room: str
    before: int | None = None
    after: int | None = None
    limit: int = DEFAULT_HISTORY_LIMIT


@dataclass(frozen=True, slots=True)
class ChatRead:
    t: ClassVar[str] = "chat.read"
    id: RequestId
    room: str
    seq: int


@dataclass(frozen=True, slots=True)
class ChatReaders:
    t: ClassVar[str] = "chat.readers"
    id: RequestId
    room: str
    seq: int


@dataclass(frozen=True, slots=True)
class PollCreate:
    t: ClassVar[str] = "poll.create"
    id: RequestId
    room: str
    question: str
    options: tuple[str, ...]
    duration_s: int | None = None


@dataclass(frozen=True, slots=True)
class PollVote:
    """``option`` is only bounded by the largest poll here; the poll checks its own size."""

    t: ClassVar[str] = "poll.vote"
    id: RequestId
    room: str
    poll: str
    option: int


@dataclass(frozen=True, slots=True)
class PollClose:
    t: ClassVar[str] = "poll.close"
    id: RequestId
    room: str
    poll: str


@dataclass(frozen=True, slots=True)
class Like:
    t: ClassVar[str] = "like"
    id: RequestId
    room: str
    n: int = 1


@dataclass(frozen=True, slots=True)
class ProductPin:
    t: ClassVar[str] = "product.pin"
    id: RequestId
    room: str
    product: Product


@dataclass(frozen=True, slots=True)
class ProductUnpin:
    t: ClassVar[str] = "product.unpin"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class CohostRequest:
    t: ClassVar[str] = "cohost.request"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class CohostInvite:
    t: ClassVar[str] = "cohost.invite"
    id: RequestId
    room: str
    user: str


@dataclass(frozen=True, slots=True)
class CohostAccept:
    t: ClassVar[str] = "cohost.accept"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class CohostDecline:
    t: ClassVar[str] = "cohost.decline"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class CohostEnd:
    t: ClassVar[str] = "cohost.end"
    id: RequestId
    room: str
    user: str


@dataclass(frozen=True, slots=True)
class ModMute:
    t: ClassVar[str] = "mod.mute"
    id: RequestId
    room: str
    user: str
    seconds: int


@dataclass(frozen=True, slots=True)
class ModKick:
    t: ClassVar[str] = "mod.kick"
    id: RequestId
    room: str
    user: str


@dataclass(frozen=True, slots=True)
class ModBan:
    t: ClassVar[str] = "mod.ban"
    id: RequestId
    room: str
    user: str


@dataclass(frozen=True, slots=True)
class ModDelete:
    t: ClassVar[str] = "mod.delete"
    id: RequestId
    room: str
    seq: int


@dataclass(frozen=True, slots=True)
class RoomEnd:
    t: ClassVar[str] = "room.end"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class RtcPublish:
    t: ClassVar[str] = "rtc.publish"
    id: RequestId
    room: str
    sdp: str


@dataclass(frozen=True, slots=True)
class RtcSubscribe:
    t: ClassVar[str] = "rtc.subscribe"
    id: RequestId
    room: str
    publisher: str
    sdp: str
    #: roomserver addition: during a PK battle, the other room whose host to watch.
    from_room: str | None = None


@dataclass(frozen=True, slots=True)
class RtcUnpublish:
    t: ClassVar[str] = "rtc.unpublish"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class RtcUnsubscribe:
    t: ClassVar[str] = "rtc.unsubscribe"
    id: RequestId
    room: str
    publisher: str
    from_room: str | None = None


@dataclass(frozen=True, slots=True)
class DrawStart:
    """A lucky draw (a roomserver addition): ``eligibility`` is present, keyword or voted."""

    t: ClassVar[str] = "draw.start"
    id: RequestId
    room: str
    prize: str
    winners: int
    eligibility: str
    duration_s: int
    keyword: str | None = None
    poll: str | None = None


@dataclass(frozen=True, slots=True)
class RecStart:
    """Start recording the room (a roomserver addition, host only)."""

    t: ClassVar[str] = "rec.start"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class RecStop:
    """Stop recording the room (a roomserver addition, host only)."""

    t: ClassVar[str] = "rec.stop"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class RecAuto:
    """Record whenever the room is live, or stop doing so (a roomserver addition, host only)."""

    t: ClassVar[str] = "rec.auto"
    id: RequestId
    room: str
    on: bool


@dataclass(frozen=True, slots=True)
class PkInvite:
    """Invite the host of ``to_room`` to a PK battle (a roomserver addition, host only)."""

    t: ClassVar[str] = "pk.invite"
    id: RequestId
    room: str
    to_room: str
    duration_s: int


@dataclass(frozen=True, slots=True)
class PkAccept:
    t: ClassVar[str] = "pk.accept"
    id: RequestId
    room: str
    pk: str


@dataclass(frozen=True, slots=True)
class PkDecline:
    t: ClassVar[str] = "pk.decline"
    id: RequestId
    room: str
    pk: str


@dataclass(frozen=True, slots=True)
class PkEnd:
    t: ClassVar[str] = "pk.end"
    id: RequestId
    room: str


@dataclass(frozen=True, slots=True)
class Ping:
    t: ClassVar[str] = "ping"
    id: RequestId


#: Every request that names a room (all but ``ping``): each has a ``room`` field.
RoomRequest: TypeAlias = (
    Join
    | Leave
    | ChatSend
    | ChatHistory
    | ChatRead
    | ChatReaders
    | PollCreate
    | PollVote
    | PollClose
    | Like
    | ProductPin
    | ProductUnpin
    | CohostRequest
    | CohostInvite
    | CohostAccept
    | CohostDecline
    | CohostEnd
    | ModMute
    | ModKick
    | ModBan
    | ModDelete
    | RoomEnd
    | RtcPublish
    | RtcSubscribe
    | RtcUnpublish
    | RtcUnsubscribe
    | DrawStart
    | RecStart
    | RecStop
    | RecAuto
    | PkInvite
    | PkAccept
    | PkDecline
    | PkEnd
)
Request: TypeAlias = RoomRequest | Ping


# --- field validators -----------------------------------------------------------
#
# A validator takes the raw value (``None`` when absent or null) and the field's
# name as the client wrote it (``product.url``, ``options[2]``), and returns the
# clean value or raises BadRequest naming that field. Optional validators return
# _ABSENT so that the dataclass default applies.

Validator = Callable[[Any, str], Any]

_ABSENT: Any = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(lo: int, hi: int, *, trim: bool = False) -> Validator:
    """A required string of ``lo``-``hi`` code points, after ``strip()`` when ``trim``."""
    suffix = " after trimming" if trim else ""

    def check(value: Any, name: str) -> str:
        if value is None:
            raise BadRequest(f"{name}: is required")
        if not isinstance(value, str):
            raise BadRequest(f"{name}: must be a string")
        text = value.strip() if trim else value
        if not lo <= len(text) <= hi:
            raise BadRequest(f"{name}: must be {lo}-{hi} characters{suffix}")
        return text

    return check


def _integer(lo: int, hi: int = MAX_INT) -> Validator:
    """A required integer in ``lo``..``hi``; booleans and floats are not integers."""

    def check(value: Any, name: str) -> int:
        if value is None:
            raise BadRequest(f"{name}: is required")
        if not _is_int(value):
            raise BadRequest(f"{name}: must be an integer")
        if not lo <= value <= hi:
            raise BadRequest(f"{name}: must be an integer {lo}-{hi}")
        return int(value)

    return check


def _boolean(value: Any, name: str) -> bool:
    if value is None:
        raise BadRequest(f"{name}: is required")
    if not isinstance(value, bool):
        raise BadRequest(f"{name}: must be true or false")
    return value


def _optional(validator: Validator) -> Validator:
    """``validator`` for a present value; absent or null leaves the dataclass default."""

    def check(value: Any, name: str) -> Any:
        return _ABSENT if value is None else validator(value, name)

    return check


def _validate(
    validators: Mapping[str, Validator], obj: Mapping[Any, Any], prefix: str = ""
) -> dict[str, Any]:
    """The clean values of every field in ``validators``; absent optional ones left out."""
    out: dict[str, Any] = {}
    for field, validator in validators.items():
        value = validator(obj.get(field), prefix + field)
        if value is not _ABSENT:
            out[field] = value
    return out


_ID = _string(1, MAX_ID_CHARS)
_SEQ = _integer(0)
_OPTION_TEXT = _string(1, MAX_OPTION_CHARS, trim=True)


def _options(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        raise BadRequest(f"{name}: is required")
    if not isinstance(value, list | tuple):
        raise BadRequest(f"{name}: must be a list of strings")
    if not MIN_OPTIONS <= len(value) <= MAX_OPTIONS:
        raise BadRequest(f"{name}: must have {MIN_OPTIONS}-{MAX_OPTIONS} items")
    out: list[str] = []
    for index, item in enumerate(value):
        item_name = f"{name}[{index}]"
        if not isinstance(item, str):  # also for null: an item is never optional
            raise BadRequest(f"{item_name}: must be a string")
        out.append(_OPTION_TEXT(item, item_name))
    return tuple(out)


def _price(value: Any, name: str) -> str:
    """A display price: a string, or a finite number kept in its ``str`` form."""
    if isinstance(value, str):
        text = value
    elif _is_int(value):
        if abs(value) >= 10**MAX_PRICE_CHARS:  # before str(): too long anyway
            raise BadRequest(f"{name}: must be 1-{MAX_PRICE_CHARS} characters")
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(f"{name}: must be a finite number")
        text = str(value)
    else:
        raise BadRequest(f"{name}: must be a string or a number")
    if not 1 <= len(text) <= MAX_PRICE_CHARS:
        raise BadRequest(f"{name}: must be 1-{MAX_PRICE_CHARS} characters")
    return text


_CURRENCY_RE = re.compile(r"[A-Z]{3}")


def _currency(value: Any, name: str) -> str:
    if not isinstance(value, str) or _CURRENCY_RE.fullmatch(value) is None:
        raise BadRequest(f"{name}: must be 3 uppercase letters A-Z")
    return value


def _url(value: Any, name: str) -> str:
    """An http(s) URL: every other scheme (``javascript:``, ``data:``) could run in a page.

    Whitespace and control characters are refused too: they are never part of
    a valid URL and only serve to smuggle markup into careless renderers.
    """
    if (
        not isinstance(value, str)
        or len(value) > MAX_URL_CHARS
        or not any(
            value.startswith(scheme) and len(value) > len(scheme)
            for scheme in ("https://", "http://")
        )
        or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value)
    ):
        raise BadRequest(
            f"{name}: must be an http:// or https:// URL of at most {MAX_URL_CHARS} characters"
        )
    return value


_PRODUCT_FIELDS: dict[str, Validator] = {
    "id": _ID,
    "title": _string(1, MAX_PRODUCT_TITLE_CHARS),
    "price": _optional(_price),
    "currency": _optional(_currency),
    "url": _optional(_url),
    "image": _optional(_url),
}


def _product(value: Any, name: str) -> Product:
    if value is None:
        raise BadRequest(f"{name}: is required")
    if not isinstance(value, dict):
        raise BadRequest(f"{name}: must be an object")
    return Product(**_validate(_PRODUCT_FIELDS, value, prefix=f"{name}."))


def _history_check(values: Mapping[str, Any]) -> None:
    if "before" in values and "after" in values:
        raise BadRequest("before: cannot be combined with after")


def _draw_check(values: Mapping[str, Any]) -> None:
    kind = values["eligibility"]
    if kind not in ("present", "keyword", "voted"):
        raise BadRequest("eligibility: must be present, keyword or voted")
    if kind == "keyword" and values.get("keyword", _ABSENT) is _ABSENT:
        raise BadRequest("keyword: required when eligibility is keyword")
    if kind == "voted" and values.get("poll", _ABSENT) is _ABSENT:
        raise BadRequest("poll: required when eligibility is voted")


# --- the request table -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    """How to build one request class: a validator per field, then a cross-field check."""

    cls: type[Request]
    fields: Mapping[str, Validator]
    check: Callable[[Mapping[str, Any]], None] | None = None


_ROOM: dict[str, Validator] = {"room": _ID}
_ROOM_USER: dict[str, Validator] = {"room": _ID, "user": _ID}

_SPECS: tuple[_Spec, ...] = (
    _Spec(Join, {"room": _ID, "token": _string(1, MAX_TOKEN_CHARS), "since": _optional(_SEQ)}),
    _Spec(Leave, _ROOM),
    _Spec(
        ChatSend,
        {"room": _ID, "text": _string(1, MAX_TEXT_CHARS, trim=True), "cid": _ID},
    ),
    _Spec(
        ChatHistory,
        {
            "room": _ID,
            "before": _optional(_SEQ),
            "after": _optional(_SEQ),
            "limit": _optional(_integer(1, MAX_HISTORY_LIMIT)),
        },
        check=_history_check,
    ),
    _Spec(ChatRead, {"room": _ID, "seq": _SEQ}),
    _Spec(ChatReaders, {"room": _ID, "seq": _SEQ}),
    _Spec(
        PollCreate,
        {
            "room": _ID,
            "question": _string(1, MAX_QUESTION_CHARS, trim=True),
            "options": _options,
            "duration_s": _optional(_integer(1, MAX_POLL_DURATION_S)),
        },
    ),
    _Spec(PollVote, {"room": _ID, "poll": _ID, "option": _integer(0, MAX_OPTIONS - 1)}),
    _Spec(PollClose, {"room": _ID, "poll": _ID}),
    _Spec(Like, {"room": _ID, "n": _optional(_integer(1, MAX_LIKES))}),
    _Spec(ProductPin, {"room": _ID, "product": _product}),
    _Spec(ProductUnpin, _ROOM),
    _Spec(CohostRequest, _ROOM),
    _Spec(CohostInvite, _ROOM_USER),
    _Spec(CohostAccept, _ROOM),
    _Spec(CohostDecline, _ROOM),
    _Spec(CohostEnd, _ROOM_USER),
    _Spec(ModMute, {"room": _ID, "user": _ID, "seconds": _integer(1, MAX_MUTE_S)}),
    _Spec(ModKick, _ROOM_USER),
    _Spec(ModBan, _ROOM_USER),
    _Spec(ModDelete, {"room": _ID, "seq": _integer(1)}),
    _Spec(RoomEnd, _ROOM),
    _Spec(RtcPublish, {"room": _ID, "sdp": _string(1, MAX_SDP_CHARS)}),
    _Spec(
        RtcSubscribe,
        {
            "room": _ID,
            "publisher": _ID,
            "sdp": _string(1, MAX_SDP_CHARS),
            "from_room": _optional(_ID),
        },
    ),
    _Spec(RtcUnpublish, _ROOM),
    _Spec(RtcUnsubscribe, {"room": _ID, "publisher": _ID, "from_room": _optional(_ID)}),
    _Spec(
        DrawStart,
        {
            "room": _ID,
            "prize": _string(1, 200, trim=True),
            "winners": _integer(1, 100),
            "eligibility": _string(1, 16),
            "duration_s": _integer(5, 3600),
            "keyword": _optional(_string(1, 50, trim=True)),
            "poll": _optional(_ID),
        },
        check=_draw_check,
    ),
    _Spec(RecStart, _ROOM),
    _Spec(RecStop, _ROOM),
    _Spec(RecAuto, {"room": _ID, "on": _boolean}),
    _Spec(
        PkInvite,
        {"room": _ID, "to_room": _ID, "duration_s": _integer(PK_MIN_DURATION_S, PK_MAX_DURATION_S)},
    ),
    _Spec(PkAccept, {"room": _ID, "pk": _ID}),
    _Spec(PkDecline, {"room": _ID, "pk": _ID}),
    _Spec(PkEnd, _ROOM),
    _Spec(Ping, {}),
)

_SPEC_BY_TYPE: dict[str, _Spec] = {spec.cls.t: spec for spec in _SPECS}

#: Every request class by its wire type ``t``.
REQUEST_TYPES: dict[str, type[Request]] = {t: spec.cls for t, spec in _SPEC_BY_TYPE.items()}


# --- entry points --------------------------------------------------------------------


def _request_id(value: Any) -> RequestId:
    if value is None:
        raise BadRequest("id: is required")
    if isinstance(value, str):
        if not 1 <= len(value) <= MAX_ID_CHARS:
            raise BadRequest(f"id: must be 1-{MAX_ID_CHARS} characters")
        return value
    if _is_int(value):
        if not -MAX_INT <= value <= MAX_INT:
            raise BadRequest("id: must be an integer within -2**53..2**53")
        return int(value)
    raise BadRequest("id: must be an integer or a string")


def request_id_of(obj: Any) -> RequestId | None:
    """The valid ``id`` of a raw frame object, else None: what an error answer echoes."""
    if not isinstance(obj, dict):
        return None
    try:
        return _request_id(obj.get("id"))
    except BadRequest:
        return None


def parse_request(obj: Any) -> Request:
    """The typed request of one decoded client frame.

    Raises ``BadRequest`` naming the offending field, or ``UnknownType``; the
    checks run in the order: object, ``t``, ``id``, known type, fields.
    """
    if not isinstance(obj, dict):
        raise BadRequest("message must be an object")
    t = obj.get("t")
    if t is None:
        raise BadRequest("t: is required")
    if not isinstance(t, str):
        raise BadRequest("t: must be a string")
    request_id = _request_id(obj.get("id"))
    spec = _SPEC_BY_TYPE.get(t)
    if spec is None:
        raise UnknownType(f"unknown type {t[:64]!r}")
    values = _validate(spec.fields, obj)
    if spec.check is not None:
        spec.check(values)
    return spec.cls(id=request_id, **values)
