"""Room tokens: HS256 JWTs minted by the operator, valid for one room only.

Verification pins the algorithm (so ``alg: none`` and RS/HS confusion are
refused), requires every claim the contract names, and checks each claim's
type and length, because a validly signed token is still operator input.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from roomserver.errors import Unauthorized
from roomserver.ids import Identity, Role, UserId

ALGORITHM = "HS256"
DEFAULT_TTL_S = 6 * 3600
_REQUIRED = ("sub", "name", "room", "role", "exp")


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
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": list(_REQUIRED)},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    identity = _check_claims(claims)
    if claims["room"] != room:
        raise Unauthorized("token is for another room")
    return identity


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
