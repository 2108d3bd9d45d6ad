"""Per-connection protocol logic, sans I/O: frames in, requests or error answers out.

The session owns the rules that concern a connection rather than a room: a
frame is decoded with the connection's codec and validated into a typed
request once; an undecodable or invalid frame is answered with ``bad_request``
(or ``unknown_type``) and the connection stays open; twenty bad frames in a
row mean the client is broken or hostile, and the connection is closed with
1008.
"""

from __future__ import annotations

from typing import Any

from roomserver.errors import ClientError
from signaling.codec import Codec
from signaling.messages import Request, parse_request, request_id_of

MAX_FRAME_BYTES = 64 * 1024
MAX_BAD_FRAMES = 20
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008


class Session:
    def __init__(self, codec: Codec, max_bad_frames: int = MAX_BAD_FRAMES) -> None:
        self.codec = codec
        self.max_bad_frames = max_bad_frames
        self.bad_in_a_row = 0

    def receive(self, data: bytes | str) -> Request | dict[str, Any]:
        """A valid request, or the error answer for a bad frame."""
        raw: Any = None
        try:
            raw = self.codec.decode(data)
            request = parse_request(raw)
        except ClientError as exc:
            self.bad_in_a_row += 1
            return exc.to_wire(request_id_of(raw))
        self.bad_in_a_row = 0
        return request

    @property
    def should_close(self) -> bool:
        return self.bad_in_a_row >= self.max_bad_frames
