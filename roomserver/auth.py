"""Room tokens: HS256 JWTs minted by the operator, valid for one room only.

Verification pins the algorithm (so ``alg: none`` and RS/HS confusion are
refused), requires every claim the contract names, and checks each claim's
type and length, because a validly signed token is still operator input.

Minting uses PyJWT. Verification is done here, because it runs on every join:
PyJWT re-prepares the key and walks generic options on each call (about 26 µs),
while an HS256 check is one HMAC and two small JSON parses (about 5 µs). It
follows PyJWT's rules for the claims it reads (``exp``, ``nbf``, ``iat``,
``aud``, ``jti``), except that ``iat`` and ``nbf`` may lie up to
``CLOCK_SKEW_S`` ahead of this node's clock (a token minted by an operator's backend
whose clock runs a little ahead is not refused; ``exp`` gets no leeway), and is
stricter about form: the segments must be
plain, canonical base64url, the header must name HS256, and ``crit`` or ``b64`` headers
are refused (tests/unit/test_auth.py compares the two on mutated tokens).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import time
from typing import Any

import jwt
import orjson

from roomserver.errors import Unauthorized
from roomserver.ids import Identity, Role, UserId

ALGORITHM = "HS256"
DEFAULT_TTL_S = 6 * 3600
_REQUIRED = ("sub", "name", "room", "role", "exp")
#: Longer tokens are refused unread: the claims fit in a few hundred bytes.
MAX_TOKEN_CHARS = 4096
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
#: How far ahead of this node's clock a token's ``iat`` or ``nbf`` may be.
CLOCK_SKEW_S = 30


def mint_token(
    secret: str,
    *,
    room: str,
    user: str,
    name: str,
    role: Role | str,
    ttl_s: int = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    """A signed token for ``user`` in ``room``; checks the claims as ``verify_token`` will."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": user,
        "name": name,
        "room": room,
        "role": Role(role).value,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    _check_claims(claims)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, room: str) -> Identity:
    """The identity a token proves in ``room``; ``Unauthorized`` for anything else."""
    claims = _verified_claims(_key(secret), token, time.time())
    identity = _check_claims(claims)
    if claims["room"] != room:
        raise Unauthorized("token is for another room")
    return identity


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return secret.encode()


def _invalid(why: str) -> Unauthorized:
    return Unauthorized(f"invalid token: {why}")


def _segment(text: str) -> bytes:
    if _SEGMENT.fullmatch(text) is None:
        raise _invalid("not base64url")
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("not base64url") from None
    # Only the canonical spelling: the last character's unused low bits must be zero,
    # so no two texts carry the same token (PyJWT 2.15 refuses them too).
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != text.encode("ascii"):
        raise _invalid("not canonical base64url")
    return decoded


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise _invalid(f"{what} is not a JSON object")
    return value


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} must be a number")
    return float(value)


def _verified_claims(key: bytes, token: str, now: float) -> dict[str, Any]:
    """The claims of a correctly signed, current HS256 token (see the module docstring)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise _invalid("too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise _invalid("not three segments")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(_segment(header_b64), "header")
    if header.get("alg") != ALGORITHM:
        raise _invalid("the algorithm must be HS256")
    if "crit" in header or "b64" in header:
        raise _invalid("unsupported header")
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    expected = hmac.digest(key, signing_input, hashlib.sha256)
    if not hmac.compare_digest(expected, _segment(signature_b64)):
        raise _invalid("signature verification failed")
    claims = _json_object(_segment(payload_b64), "payload")
    for name in _REQUIRED:
        if claims.get(name) is None:
            raise _invalid(f'token is missing the "{name}" claim')
    if "iat" in claims and _number(claims, "iat") > now + CLOCK_SKEW_S:
        raise _invalid("not yet valid (iat)")
    if "nbf" in claims and _number(claims, "nbf") > now + CLOCK_SKEW_S:
        raise _invalid("not yet valid (nbf)")
    if int(_number(claims, "exp")) <= now:
        raise Unauthorized("token expired")
    if claims.get("aud"):
        raise _invalid("unexpected audience")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise _invalid("jti must be a string")
    return claims


def _check_claims(claims: dict[str, Any]) -> Identity:
    for key, low, high in (("sub", 1, 64), ("name", 1, 64), ("room", 1, 64)):
        value = claims.get(key)
        if not isinstance(value, str) or not low <= len(value) <= high:
            raise Unauthorized(f"token claim {key}: must be a string of {low}-{high} characters")
    try:
        role = Role(str(claims.get("role")))
    except ValueError:
        raise Unauthorized("token claim role: must be host, moderator or member") from None
    return Identity(user=UserId(claims["sub"]), name=claims["name"], role=role)
