"""Request parsing: every type, every field boundary, and no exception but ClientError."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomserver.errors import BadRequest, ClientError, UnknownType
from signaling.codec import JSON_CODEC, MSGPACK_CODEC
from signaling.messages import _SPECS as SPECS
from signaling.messages import (
    REQUEST_TYPES,
    ChatHistory,
    ChatRead,
    ChatReaders,
    ChatSend,
    CohostAccept,
    CohostDecline,
    CohostEnd,
    CohostInvite,
    CohostRequest,
    Join,
    Leave,
    Like,
    ModBan,
    ModDelete,
    ModKick,
    ModMute,
    Ping,
    PollClose,
    PollCreate,
    PollVote,
    Product,
    ProductPin,
    ProductUnpin,
    Request,
    RoomEnd,
    RtcPublish,
    RtcSubscribe,
    RtcUnpublish,
    RtcUnsubscribe,
    parse_request,
    request_id_of,
)

# One valid example per request type, and the request it must parse to.
EXAMPLES: dict[str, tuple[dict[str, Any], Request]] = {
    "join": (
        {"t": "join", "id": 1, "room": "r1", "token": "tok", "since": 7},
        Join(id=1, room="r1", token="tok", since=7),
    ),
    "leave": ({"t": "leave", "id": 2, "room": "r1"}, Leave(id=2, room="r1")),
    "chat.send": (
        {"t": "chat.send", "id": "a", "room": "r1", "text": "  hello  ", "cid": "c1"},
        ChatSend(id="a", room="r1", text="hello", cid="c1"),
    ),
    "chat.history": (
        {"t": "chat.history", "id": 3, "room": "r1", "before": 100, "limit": 20},
        ChatHistory(id=3, room="r1", before=100, after=None, limit=20),
    ),
    "chat.read": ({"t": "chat.read", "id": 4, "room": "r1", "seq": 5}, ChatRead(4, "r1", 5)),
    "chat.readers": (
        {"t": "chat.readers", "id": 5, "room": "r1", "seq": 5},
        ChatReaders(id=5, room="r1", seq=5),
    ),
    "poll.create": (
        {
            "t": "poll.create",
            "id": 6,
            "room": "r1",
            "question": " Which color? ",
            "options": [" red", "blue "],
            "duration_s": 60,
        },
        PollCreate(
            id=6, room="r1", question="Which color?", options=("red", "blue"), duration_s=60
        ),
    ),
    "poll.vote": (
        {"t": "poll.vote", "id": 7, "room": "r1", "poll": "p1", "option": 1},
        PollVote(id=7, room="r1", poll="p1", option=1),
    ),
    "poll.close": (
        {"t": "poll.close", "id": 8, "room": "r1", "poll": "p1"},
        PollClose(id=8, room="r1", poll="p1"),
    ),
    "like": ({"t": "like", "id": 9, "room": "r1", "n": 3}, Like(id=9, room="r1", n=3)),
    "product.pin": (
        {
            "t": "product.pin",
            "id": 10,
            "room": "r1",
            "product": {
                "id": "p9",
                "title": "Robot kit",
                "price": "39.90",
                "currency": "EUR",
                "url": "https://shop.example/p9",
                "image": "http://cdn.example/p9.jpg",
            },
        },
        ProductPin(
            id=10,
            room="r1",
            product=Product(
                id="p9",
                title="Robot kit",
                price="39.90",
                currency="EUR",
                url="https://shop.example/p9",
                image="http://cdn.example/p9.jpg",
            ),
        ),
    ),
    "product.unpin": ({"t": "product.unpin", "id": 11, "room": "r1"}, ProductUnpin(11, "r1")),
    "cohost.request": (
        {"t": "cohost.request", "id": 12, "room": "r1"},
        CohostRequest(id=12, room="r1"),
    ),
    "cohost.invite": (
        {"t": "cohost.invite", "id": 13, "room": "r1", "user": "u3"},
        CohostInvite(id=13, room="r1", user="u3"),
    ),
    "cohost.accept": ({"t": "cohost.accept", "id": 14, "room": "r1"}, CohostAccept(14, "r1")),
    "cohost.decline": (
        {"t": "cohost.decline", "id": 15, "room": "r1"},
        CohostDecline(id=15, room="r1"),
    ),
    "cohost.end": (
        {"t": "cohost.end", "id": 16, "room": "r1", "user": "u3"},
        CohostEnd(id=16, room="r1", user="u3"),
    ),
    "mod.mute": (
        {"t": "mod.mute", "id": 17, "room": "r1", "user": "u3", "seconds": 60},
        ModMute(id=17, room="r1", user="u3", seconds=60),
    ),
    "mod.kick": (
        {"t": "mod.kick", "id": 18, "room": "r1", "user": "u3"},
        ModKick(id=18, room="r1", user="u3"),
    ),
    "mod.ban": (
        {"t": "mod.ban", "id": 19, "room": "r1", "user": "u3"},
        ModBan(id=19, room="r1", user="u3"),
    ),
    "mod.delete": (
        {"t": "mod.delete", "id": 20, "room": "r1", "seq": 1},
        ModDelete(id=20, room="r1", seq=1),
    ),
    "room.end": ({"t": "room.end", "id": 21, "room": "r1"}, RoomEnd(id=21, room="r1")),
    "rtc.publish": (
        {"t": "rtc.publish", "id": 22, "room": "r1", "sdp": "v=0"},
        RtcPublish(id=22, room="r1", sdp="v=0"),
    ),
    "rtc.subscribe": (
        {"t": "rtc.subscribe", "id": 23, "room": "r1", "publisher": "u1", "sdp": "v=0"},
        RtcSubscribe(id=23, room="r1", publisher="u1", sdp="v=0"),
    ),
    "rtc.unpublish": ({"t": "rtc.unpublish", "id": 24, "room": "r1"}, RtcUnpublish(24, "r1")),
    "rtc.unsubscribe": (
        {"t": "rtc.unsubscribe", "id": 25, "room": "r1", "publisher": "u1"},
        RtcUnsubscribe(id=25, room="r1", publisher="u1"),
    ),
    "ping": ({"t": "ping", "id": 26}, Ping(id=26)),
}

#: The request types of the contract's table, spelled out independently.
CONTRACT_TYPES = {
    "join", "leave", "chat.send", "chat.history", "chat.read", "chat.readers",
    "poll.create", "poll.vote", "poll.close", "like", "product.pin", "product.unpin",
    "cohost.request", "cohost.invite", "cohost.accept", "cohost.decline", "cohost.end",
    "mod.mute", "mod.kick", "mod.ban", "mod.delete", "room.end",
    "rtc.publish", "rtc.subscribe", "rtc.unpublish", "rtc.unsubscribe", "ping",
}  # fmt: skip

ROOM_TYPES = sorted(t for t in CONTRACT_TYPES if t != "ping")


def example(t: str, **overrides: Any) -> dict[str, Any]:
    obj = dict(EXAMPLES[t][0])
    obj.update(overrides)
    return obj


def bad(obj: Any) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_request(obj)
    assert info.value.code == "bad_request"
    return info.value


def assert_names(err: ClientError, field: str) -> None:
    assert err.message.startswith(f"{field}: "), err.message


# --- the table --------------------------------------------------------------------------


#: Request types roomserver adds to the contract (additions only, never renames).
ADDED_TYPES = {
    "draw.start",
    "rec.start",
    "rec.stop",
    "rec.auto",
    "pk.invite",
    "pk.accept",
    "pk.decline",
    "pk.end",
}


def test_request_types_match_the_contract() -> None:
    assert set(REQUEST_TYPES) == CONTRACT_TYPES | ADDED_TYPES
    assert set(EXAMPLES) == CONTRACT_TYPES


def test_draw_start_rules() -> None:
    base = {"t": "draw.start", "id": 1, "room": "r", "prize": " Kit ", "winners": 2}
    ok = parse_request({**base, "eligibility": "keyword", "keyword": " LIVE ", "duration_s": 60})
    assert (ok.prize, ok.keyword, ok.poll) == ("Kit", "LIVE", None)  # type: ignore[union-attr]
    voted = parse_request({**base, "eligibility": "voted", "poll": "p1", "duration_s": 5})
    assert voted.poll == "p1"  # type: ignore[union-attr]
    for bad, field in [
        ({"eligibility": "anyone", "duration_s": 60}, "eligibility"),
        ({"eligibility": "keyword", "duration_s": 60}, "keyword"),
        ({"eligibility": "voted", "duration_s": 60}, "poll"),
        ({"eligibility": "present", "duration_s": 4}, "duration_s"),
        ({"eligibility": "present", "duration_s": 60, "winners": 0}, "winners"),
    ]:
        with pytest.raises(BadRequest) as info:
            parse_request({**base, **bad})
        assert info.value.message.startswith(field), (bad, info.value.message)


@pytest.mark.parametrize("t", sorted(CONTRACT_TYPES))
def test_class_shape(t: str) -> None:
    cls = REQUEST_TYPES[t]
    assert cls.t == t
    assert dataclasses.is_dataclass(cls)
    assert "__slots__" in vars(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert names[0] == "id"
    assert ("room" in names) == (t != "ping")
    request = EXAMPLES[t][1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.id = 99  # type: ignore[misc]


def test_spec_fields_match_dataclass_fields() -> None:
    for spec in SPECS:
        names = {f.name for f in dataclasses.fields(spec.cls)} - {"id"}
        assert set(spec.fields) == names, spec.cls.__name__
    assert len({spec.cls for spec in SPECS}) == len(SPECS)


# --- valid examples ---------------------------------------------------------------------


@pytest.mark.parametrize("t", sorted(CONTRACT_TYPES))
def test_every_type_parses(t: str) -> None:
    obj, expected = EXAMPLES[t]
    request = parse_request(obj)
    assert type(request) is REQUEST_TYPES[t]
    assert request == expected


@pytest.mark.parametrize("t", sorted(CONTRACT_TYPES))
@pytest.mark.parametrize("codec", [JSON_CODEC, MSGPACK_CODEC], ids=lambda c: c.name)
def test_every_type_parses_through_codec(t: str, codec: Any) -> None:
    obj, expected = EXAMPLES[t]
    assert parse_request(codec.decode(codec.encode(obj))) == expected


def test_match_on_classes() -> None:
    def room_of(request: Request) -> str | None:
        match request:
            case Ping():
                return None
            case ChatSend(room=room, text=text):
                return f"{room}:{text}"
            case _:
                return request.room

    assert room_of(parse_request(example("ping"))) is None
    assert room_of(parse_request(example("chat.send"))) == "r1:hello"
    assert room_of(parse_request(example("leave"))) == "r1"


def test_defaults() -> None:
    assert parse_request({"t": "join", "id": 1, "room": "r", "token": "x"}) == Join(
        id=1, room="r", token="x", since=None
    )
    assert parse_request({"t": "chat.history", "id": 1, "room": "r"}) == ChatHistory(
        id=1, room="r", before=None, after=None, limit=50
    )
    assert parse_request({"t": "like", "id": 1, "room": "r"}) == Like(id=1, room="r", n=1)
    created = parse_request(example("poll.create", duration_s=None))
    assert isinstance(created, PollCreate)
    assert created.duration_s is None
    pinned = parse_request(
        {"t": "product.pin", "id": 1, "room": "r", "product": {"id": "p", "title": "T"}}
    )
    assert isinstance(pinned, ProductPin)
    assert pinned.product == Product(id="p", title="T")


def test_null_optional_is_absent() -> None:
    obj = {"t": "chat.history", "id": 1, "room": "r", "before": None, "after": 4, "limit": None}
    assert parse_request(obj) == ChatHistory(id=1, room="r", before=None, after=4, limit=50)


def test_unknown_extra_fields_ignored() -> None:
    obj = example("chat.send", extra=1, nested={"a": [1]}, t2="x")
    assert parse_request(obj) == EXAMPLES["chat.send"][1]
    assert parse_request({"t": "ping", "id": 1, "room": "ignored"}) == Ping(id=1)
    product = dict(EXAMPLES["product.pin"][0]["product"], stock=5)
    assert parse_request(example("product.pin", product=product)) == EXAMPLES["product.pin"][1]


def test_trimmed_text_is_stored() -> None:
    request = parse_request(example("chat.send", text="\n\t hi there \u3000"))
    assert isinstance(request, ChatSend)
    assert request.text == "hi there"


def test_text_length_counts_code_points() -> None:
    request = parse_request(example("chat.send", text="🎉" * 2000))
    assert isinstance(request, ChatSend)
    assert len(request.text) == 2000
    assert_names(bad(example("chat.send", text="🎉" * 2001)), "text")


def test_text_message_wording() -> None:
    err = bad(example("chat.send", text="   "))
    assert err.message == "text: must be 1-2000 characters after trimming"


def test_options_become_a_trimmed_tuple() -> None:
    request = parse_request(example("poll.create", options=[" a ", "b", "\tc"]))
    assert isinstance(request, PollCreate)
    assert request.options == ("a", "b", "c")


# --- product -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("39.90", "39.90"),
        ("1" * 32, "1" * 32),
        (5, "5"),
        (0, "0"),
        (39.9, "39.9"),
        (10**31, "1" + "0" * 31),
        (1e300, "1e+300"),
    ],
)
def test_price_forms(price: Any, expected: str) -> None:
    product = {"id": "p", "title": "T", "price": price}
    request = parse_request(example("product.pin", product=product))
    assert isinstance(request, ProductPin)
    assert request.product.price == expected


@pytest.mark.parametrize(
    "price", ["", "1" * 33, 10**32, -(10**31), math.nan, math.inf, -math.inf, True, [], {}]
)
def test_price_rejected(price: Any) -> None:
    product = {"id": "p", "title": "T", "price": price}
    assert_names(bad(example("product.pin", product=product)), "product.price")


def test_product_to_wire_only_present_fields() -> None:
    assert Product(id="p", title="T").to_wire() == {"id": "p", "title": "T"}
    full = EXAMPLES["product.pin"][1]
    assert isinstance(full, ProductPin)
    assert full.product.to_wire() == EXAMPLES["product.pin"][0]["product"]
    assert Product(id="p", title="T", currency="USD").to_wire() == {
        "id": "p",
        "title": "T",
        "currency": "USD",
    }


@pytest.mark.parametrize("product", [None, "p9", ["p9"], 5])
def test_product_must_be_object(product: Any) -> None:
    obj = example("product.pin")
    if product is None:
        del obj["product"]
    else:
        obj["product"] = product
    assert_names(bad(obj), "product")


# --- boundaries --------------------------------------------------------------------------

S = "a"
URL_PREFIX = "https://"


def _product(**fields: Any) -> dict[str, Any]:
    return {"id": "p", "title": "T", **fields}


# (t, field named in the error, overrides that pass, overrides that fail)
BOUNDARIES: list[tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("join", "token", [{"token": S}, {"token": S * 4096}], [{"token": ""}, {"token": S * 4097}]),
    ("join", "since", [{"since": 0}, {"since": 2**53}], [{"since": -1}, {"since": 2**53 + 1}]),
    (
        "chat.send",
        "text",
        [{"text": S}, {"text": S * 2000}, {"text": "  " + S * 2000 + "\n"}],
        [{"text": ""}, {"text": " \t\n"}, {"text": S * 2001}],
    ),
    ("chat.send", "cid", [{"cid": S}, {"cid": S * 64}], [{"cid": ""}, {"cid": S * 65}]),
    (
        "chat.history",
        "before",
        [{"before": 0}, {"before": 2**53}],
        [{"before": -1}, {"before": 2**53 + 1}],
    ),
    (
        "chat.history",
        "after",
        [{"before": None, "after": 0}, {"before": None, "after": 2**53}],
        [{"before": None, "after": -1}, {"before": None, "after": 2**53 + 1}],
    ),
    (
        "chat.history",
        "limit",
        [{"limit": 1}, {"limit": 200}],
        [{"limit": 0}, {"limit": 201}, {"limit": -1}],
    ),
    ("chat.history", "before", [{"before": None, "after": 3}], [{"before": 1, "after": 3}]),
    ("chat.read", "seq", [{"seq": 0}, {"seq": 2**53}], [{"seq": -1}, {"seq": 2**53 + 1}]),
    ("chat.readers", "seq", [{"seq": 0}], [{"seq": -1}]),
    (
        "poll.create",
        "question",
        [{"question": S}, {"question": S * 300}, {"question": " " + S * 300 + " "}],
        [{"question": ""}, {"question": "   "}, {"question": S * 301}],
    ),
    (
        "poll.create",
        "options",
        [{"options": [S] * 2}, {"options": [S] * 10}, {"options": (S, S)}],
        [{"options": [S]}, {"options": [S] * 11}, {"options": []}, {"options": "ab"}],
    ),
    (
        "poll.create",
        "options[1]",
        [{"options": [S, S * 100]}, {"options": [S, " " + S * 100 + " "]}],
        [
            {"options": [S, ""]},
            {"options": [S, "  "]},
            {"options": [S, S * 101]},
            {"options": [S, 5]},
            {"options": [S, None]},
        ],
    ),
    (
        "poll.create",
        "duration_s",
        [{"duration_s": 1}, {"duration_s": 86400}],
        [{"duration_s": 0}, {"duration_s": 86401}],
    ),
    ("poll.vote", "option", [{"option": 0}, {"option": 9}], [{"option": -1}, {"option": 10}]),
    ("poll.vote", "poll", [{"poll": S}, {"poll": S * 64}], [{"poll": ""}, {"poll": S * 65}]),
    ("poll.close", "poll", [{"poll": S * 64}], [{"poll": S * 65}]),
    ("like", "n", [{"n": 1}, {"n": 50}], [{"n": 0}, {"n": 51}]),
    (
        "product.pin",
        "product.id",
        [{"product": {"id": S, "title": "T"}}, {"product": {"id": S * 64, "title": "T"}}],
        [{"product": {"id": "", "title": "T"}}, {"product": {"id": S * 65, "title": "T"}}],
    ),
    (
        "product.pin",
        "product.title",
        [{"product": _product(title=S)}, {"product": _product(title=S * 200)}],
        [{"product": _product(title="")}, {"product": _product(title=S * 201)}],
    ),
    (
        "product.pin",
        "product.currency",
        [{"product": _product(currency="EUR")}, {"product": _product(currency="USD")}],
        [
            {"product": _product(currency=c)}
            for c in ("eur", "EU", "EURO", "ÄUR", "EU1", "EUR\n", "", 978)
        ],
    ),
    (
        "product.pin",
        "product.url",
        [
            {"product": _product(url="https://x")},
            {"product": _product(url="http://x")},
            {"product": _product(url=URL_PREFIX + S * (2048 - len(URL_PREFIX)))},
        ],
        [
            {"product": _product(url=u)}
            for u in (
                "javascript:alert(1)",
                "data:text/html,<script>alert(1)</script>",
                "ftp://x",
                "//x",
                "https://",
                " https://x",
                "https://x y",
                "https://x\n",
                "HTTPS://x",
                URL_PREFIX + S * (2049 - len(URL_PREFIX)),
                "",
                5,
            )
        ],
    ),
    (
        "product.pin",
        "product.image",
        [{"product": _product(image="https://cdn/x.jpg")}],
        [{"product": _product(image="data:image/png;base64,AAAA")}],
    ),
    (
        "mod.mute",
        "seconds",
        [{"seconds": 1}, {"seconds": 86400}],
        [{"seconds": 0}, {"seconds": 86401}],
    ),
    ("mod.mute", "user", [{"user": S * 64}], [{"user": ""}, {"user": S * 65}]),
    ("mod.delete", "seq", [{"seq": 1}, {"seq": 2**53}], [{"seq": 0}, {"seq": -1}]),
    ("cohost.invite", "user", [{"user": S}, {"user": S * 64}], [{"user": ""}, {"user": S * 65}]),
    ("cohost.end", "user", [{"user": S * 64}], [{"user": S * 65}]),
    ("mod.kick", "user", [{"user": S * 64}], [{"user": S * 65}]),
    ("mod.ban", "user", [{"user": S * 64}], [{"user": S * 65}]),
    ("rtc.publish", "sdp", [{"sdp": S}, {"sdp": S * 20000}], [{"sdp": ""}, {"sdp": S * 20001}]),
    ("rtc.subscribe", "sdp", [{"sdp": S * 20000}], [{"sdp": ""}, {"sdp": S * 20001}]),
    (
        "rtc.subscribe",
        "publisher",
        [{"publisher": S}, {"publisher": S * 64}],
        [{"publisher": ""}, {"publisher": S * 65}],
    ),
    ("rtc.unsubscribe", "publisher", [{"publisher": S * 64}], [{"publisher": S * 65}]),
]

_PASSING = [
    pytest.param(t, o, id=f"{t}-{field}-{i}")
    for t, field, passing, _ in BOUNDARIES
    for i, o in enumerate(passing)
]
_FAILING = [
    pytest.param(t, field, o, id=f"{t}-{field}-{i}")
    for t, field, _, failing in BOUNDARIES
    for i, o in enumerate(failing)
]


@pytest.mark.parametrize(("t", "overrides"), _PASSING)
def test_boundary_passes(t: str, overrides: dict[str, Any]) -> None:
    request = parse_request(example(t, **overrides))
    assert type(request) is REQUEST_TYPES[t]


@pytest.mark.parametrize(("t", "field", "overrides"), _FAILING)
def test_boundary_fails(t: str, field: str, overrides: dict[str, Any]) -> None:
    assert_names(bad(example(t, **overrides)), field)


@pytest.mark.parametrize("t", ROOM_TYPES)
def test_room_bounds_on_every_room_request(t: str) -> None:
    for room in (S, S * 64):
        request = parse_request(example(t, room=room))
        assert not isinstance(request, Ping)
        assert request.room == room
    invalid: tuple[Any, ...] = ("", S * 65, 5, ["r1"], {"id": "r1"}, True)
    for value in invalid:
        assert_names(bad(example(t, room=value)), "room")
    obj = example(t)
    del obj["room"]
    assert bad(obj).message == "room: is required"
    assert bad(example(t, room=None)).message == "room: is required"


def _required_fields(t: str) -> list[str]:
    cls = REQUEST_TYPES[t]
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.name != "id"
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]


@pytest.mark.parametrize(
    ("t", "field"), [(t, f) for t in sorted(CONTRACT_TYPES) for f in _required_fields(t)]
)
def test_required_field_missing(t: str, field: str) -> None:
    obj = example(t)
    del obj[field]
    assert bad(obj).message == f"{field}: is required"


def test_history_before_and_after_both_rejected() -> None:
    err = bad(example("chat.history", before=5, after=1))
    assert err.message == "before: cannot be combined with after"


# --- integers ------------------------------------------------------------------------------

INT_FIELDS = [
    ("join", "since"),
    ("chat.history", "before"),
    ("chat.history", "limit"),
    ("chat.read", "seq"),
    ("chat.readers", "seq"),
    ("poll.create", "duration_s"),
    ("poll.vote", "option"),
    ("like", "n"),
    ("mod.mute", "seconds"),
    ("mod.delete", "seq"),
]


@pytest.mark.parametrize(("t", "field"), INT_FIELDS)
@pytest.mark.parametrize(
    "value", [True, False, 5.0, 1.5, math.nan, math.inf, "5", [5], {"n": 5}, b"5"]
)
def test_non_integers_rejected(t: str, field: str, value: Any) -> None:
    err = bad(example(t, **{field: value}))
    assert err.message == f"{field}: must be an integer"


def test_msgpack_ext_values_rejected() -> None:
    ext = msgpack.ExtType(1, b"x")
    stamp = msgpack.Timestamp(1, 0)
    assert_names(bad(example("chat.read", seq=stamp)), "seq")
    assert_names(bad(example("chat.send", text=ext)), "text")
    assert_names(bad(example("chat.send", text=b"bytes")), "text")
    assert_names(bad(example("ping", id=stamp)), "id")


# --- id, t, object --------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", [0, 1, -1, 2**53, -(2**53), "x", "a" * 64, "🎉" * 64, " "])
def test_valid_ids(request_id: Any) -> None:
    assert parse_request({"t": "ping", "id": request_id}) == Ping(id=request_id)
    assert request_id_of({"t": "ping", "id": request_id}) == request_id


@pytest.mark.parametrize(
    "request_id",
    [2**53 + 1, -(2**53) - 1, 2**64, True, False, 1.0, math.nan, "", "a" * 65, [], {}, b"x"],
)
def test_invalid_ids(request_id: Any) -> None:
    assert_names(bad({"t": "ping", "id": request_id}), "id")
    assert request_id_of({"t": "ping", "id": request_id}) is None


def test_id_required() -> None:
    assert bad({"t": "ping"}).message == "id: is required"
    assert bad({"t": "ping", "id": None}).message == "id: is required"
    assert_names(bad({"t": "leave", "room": "r1"}), "id")


@pytest.mark.parametrize("obj", [None, [], [{"t": "ping", "id": 1}], "ping", 5, 1.5, True, b"x"])
def test_not_an_object(obj: Any) -> None:
    assert bad(obj).message == "message must be an object"


@pytest.mark.parametrize("t", [None, 5, True, ["ping"], {"t": "ping"}])
def test_t_must_be_string(t: Any) -> None:
    obj: dict[str, Any] = {"id": 1} if t is None else {"t": t, "id": 1}
    assert_names(bad(obj), "t")


@pytest.mark.parametrize("t", ["", "pong", "Ping", "ok", "error", "chat", "mod.*", "ping "])
def test_unknown_type(t: str) -> None:
    with pytest.raises(UnknownType) as info:
        parse_request({"t": t, "id": 1})
    assert info.value.code == "unknown_type"
    assert info.value.message == f"unknown type {t!r}"


def test_unknown_type_message_truncated() -> None:
    with pytest.raises(UnknownType) as info:
        parse_request({"t": "x" * 10_000, "id": 1})
    assert info.value.message == f"unknown type {'x' * 64!r}"


def test_check_order() -> None:
    # t is checked before id, id before the type is looked up.
    assert_names(bad({"t": 5, "id": True}), "t")
    assert_names(bad({"t": "nope", "id": True}), "id")


def test_request_id_of() -> None:
    assert request_id_of({"t": "chat.send", "id": 7}) == 7
    assert request_id_of({"t": 5, "id": "abc"}) == "abc"
    assert request_id_of({"t": "nope", "id": "abc", "room": ""}) == "abc"
    assert request_id_of({}) is None
    assert request_id_of({"id": None}) is None
    assert request_id_of([{"id": 1}]) is None
    assert request_id_of("x") is None
    assert request_id_of(None) is None


def test_error_carries_id_for_answer() -> None:
    obj = example("chat.send", id="req-9", text="")
    with pytest.raises(BadRequest) as info:
        parse_request(obj)
    answer = info.value.to_wire(request_id_of(obj))
    assert answer["id"] == "req-9"
    assert answer["code"] == "bad_request"
    assert answer["message"].startswith("text: ")


# --- properties ------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: parse_request gets them from msgpack
    | st.text(max_size=30)
)
_json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=30,
)

_FIELD_NAMES = sorted(
    {f.name for cls in REQUEST_TYPES.values() for f in dataclasses.fields(cls)}
    | {"t", "price", "currency", "url", "image", "title"}
)


def _assert_parses_or_client_error(value: Any) -> None:
    try:
        request = parse_request(value)
    except ClientError as exc:
        assert exc.code in ("bad_request", "unknown_type")
        assert isinstance(exc, BadRequest | UnknownType)
    else:
        assert type(request) in REQUEST_TYPES.values()


@settings(max_examples=500, deadline=None)
@given(value=_json_values)
def test_arbitrary_values_parse_or_client_error(value: Any) -> None:
    _assert_parses_or_client_error(value)


# Objects shaped like requests (a known t, fields of known names with arbitrary
# values, sometimes valid ones) reach far deeper into the validators.
_field_values = (
    _json_values
    | st.integers(min_value=-2, max_value=12)
    | st.sampled_from(["", "r1", " x ", "a" * 64, "a" * 65, "EUR", "https://x", "javascript:x"])
    | st.lists(st.text(max_size=5), min_size=1, max_size=11)
    | st.fixed_dictionaries(
        {"id": st.text(max_size=3), "title": st.text(max_size=3)},
        optional={
            "price": _scalars,
            "currency": st.sampled_from(["EUR", "eur", "EURO"]),
            "url": st.sampled_from(["https://x", "data:x", ""]),
        },
    )
)
_request_like = st.fixed_dictionaries(
    {
        "t": st.sampled_from(sorted(REQUEST_TYPES)),
        "id": st.one_of(st.integers(min_value=-(2**54), max_value=2**54), st.text(max_size=66)),
    },
    optional={name: _field_values for name in _FIELD_NAMES if name not in ("t", "id")},
)


@settings(max_examples=1000, deadline=None)
@given(value=_request_like)
def test_request_like_objects_parse_or_client_error(value: dict[str, Any]) -> None:
    _assert_parses_or_client_error(value)


@pytest.mark.parametrize("codec", [JSON_CODEC, MSGPACK_CODEC], ids=lambda c: c.name)
def test_arbitrary_bytes_through_codec_and_parser(codec: Any) -> None:
    @settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=256))
    def check(data: bytes) -> None:
        try:
            value = codec.decode(data)
        except BadRequest as exc:
            assert exc.code == "bad_request"
        else:
            _assert_parses_or_client_error(value)

    check()


@settings(max_examples=300, deadline=None)
@given(
    t=st.sampled_from(sorted(CONTRACT_TYPES)),
    request_id=st.one_of(
        st.integers(min_value=-(2**53), max_value=2**53), st.text(min_size=1, max_size=64)
    ),
)
def test_valid_examples_keep_any_valid_id(t: str, request_id: Any) -> None:
    request = parse_request(example(t, id=request_id))
    assert request.id == request_id
    assert request_id_of(example(t, id=request_id)) == request_id
