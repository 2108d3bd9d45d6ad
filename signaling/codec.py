"""Frame codecs of the room protocol: JSON (text frames) and MessagePack (binary frames).

Invariants kept here:

- ``decode`` either returns the one decoded value of a client frame or raises
  :class:`~roomserver.errors.BadRequest`; no decoder exception (``ValueError``,
  ``UnicodeDecodeError``, msgpack's own errors, ``RecursionError``, ...) ever
  escapes, because a malformed frame is a client mistake answered with
  ``bad_request`` while the connection stays open.
- ``decode`` checks only the encoding, never the shape: whether the value is a
  request is decided by :mod:`signaling.messages`. Odd MessagePack values
  (``ExtType``, ``Timestamp``, ``bytes``) pass through untouched and are refused
  there.
- A client frame carries exactly one message, so MessagePack trailing data is
  refused. A server frame may carry several: ``join`` builds such a frame from
  messages that ``encode`` produced, and ``decode_frames`` (the client side)
  splits it again.
- JSON is strict UTF-8 without ``NaN``/``Infinity`` and with orjson's nesting
  limit, so what the server accepts any browser could also have produced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
import orjson

from roomserver.errors import BadRequest

__all__ = [
    "CODECS",
    "JSON_CODEC",
    "JSON_SUBPROTOCOL",
    "MSGPACK_CODEC",
    "MSGPACK_SUBPROTOCOL",
    "Codec",
    "codec_for",
    "decode_frames",
]

JSON_SUBPROTOCOL = "room.v1.json"
MSGPACK_SUBPROTOCOL = "room.v1.msgpack"

_JSON_ERROR = "frame is not valid JSON"
_MSGPACK_ERROR = "frame is not valid MessagePack"


class Codec(Protocol):
    """One wire encoding, chosen per connection by its WebSocket subprotocol."""

    # Read-only properties rather than plain attributes: a codec is a shared
    # constant, and a frozen implementation must satisfy the protocol too.
    @property
    def name(self) -> str:
        """The WebSocket subprotocol that selects this codec."""
        ...

    @property
    def binary(self) -> bool:
        """True when frames are binary (MessagePack), False for text frames (JSON)."""
        ...

    def decode(self, data: bytes | str) -> Any:
        """The one value carried by a client frame; ``BadRequest`` if undecodable."""
        ...

    def encode(self, message: Mapping[str, Any]) -> bytes:
        """One message as frame bytes (JSON as UTF-8, to be sent as a text frame)."""
        ...

    def join(self, encoded: Sequence[bytes]) -> bytes:
        """Several encoded messages as one frame body."""
        ...


def _as_dict(message: Mapping[str, Any]) -> dict[str, Any]:
    # orjson and msgpack serialize real dicts only; any other Mapping is copied.
    return message if isinstance(message, dict) else dict(message)


@dataclass(frozen=True, slots=True)
class _JsonCodec:
    """UTF-8 JSON through orjson; several messages per frame are separated by ``\\n``.

    orjson never writes a raw newline (it escapes them inside strings), so ``\\n``
    is a safe separator.
    """

    name: str = JSON_SUBPROTOCOL
    binary: bool = False

    def decode(self, data: bytes | str) -> Any:
        try:
            return orjson.loads(data)
        except Exception as exc:  # any decoder failure is the client's bad frame
            raise BadRequest(_JSON_ERROR) from exc

    def encode(self, message: Mapping[str, Any]) -> bytes:
        return orjson.dumps(_as_dict(message))

    def join(self, encoded: Sequence[bytes]) -> bytes:
        return b"\n".join(encoded)


@dataclass(frozen=True, slots=True)
class _MsgpackCodec:
    """MessagePack maps with str keys; several messages per frame are back to back."""

    name: str = MSGPACK_SUBPROTOCOL
    binary: bool = True

    def decode(self, data: bytes | str) -> Any:
        if isinstance(data, str):
            # A text frame on a binary subprotocol cannot be MessagePack.
            raise BadRequest(_MSGPACK_ERROR)
        try:
            # unpackb refuses trailing data (ExtraData) and bounds every
            # container/str length by the input size.
            return msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # any decoder failure is the client's bad frame
            raise BadRequest(_MSGPACK_ERROR) from exc

    def encode(self, message: Mapping[str, Any]) -> bytes:
        packed: bytes = msgpack.packb(_as_dict(message), use_bin_type=True)
        return packed

    def join(self, encoded: Sequence[bytes]) -> bytes:
        return b"".join(encoded)


JSON_CODEC: Codec = _JsonCodec()
MSGPACK_CODEC: Codec = _MsgpackCodec()

#: Every codec by its WebSocket subprotocol name.
CODECS: dict[str, Codec] = {codec.name: codec for codec in (JSON_CODEC, MSGPACK_CODEC)}


def codec_for(subprotocol: str | None) -> Codec:
    """The codec of a negotiated subprotocol; JSON when none or an unknown one was chosen."""
    if subprotocol is None:
        return JSON_CODEC
    return CODECS.get(subprotocol, JSON_CODEC)


def decode_frames(codec: Codec, data: bytes | str) -> list[Any]:
    """Split a server frame into its messages: the client-side inverse of ``Codec.join``.

    Clients must accept frames carrying one or several messages. Empty JSON
    lines are skipped. Raises ``BadRequest`` on any malformed part, including a
    truncated last MessagePack object.
    """
    if not codec.binary:
        lines = data.split("\n") if isinstance(data, str) else data.split(b"\n")
        return [codec.decode(line) for line in lines if line.strip()]
    if isinstance(data, str):
        raise BadRequest(_MSGPACK_ERROR)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(data) or 1)
    messages: list[Any] = []
    end = 0
    try:
        unpacker.feed(data)
        for message in unpacker:
            messages.append(message)
            # tell() after a complete object is its end; after iteration stops
            # it also counts a truncated tail, so it is read here, per object.
            end = unpacker.tell()
    except Exception as exc:
        raise BadRequest(_MSGPACK_ERROR) from exc
    if end != len(data):
        raise BadRequest(_MSGPACK_ERROR)
    return messages
