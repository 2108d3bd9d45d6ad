"""Room tokens: HS256 only, every claim required and bounded, valid for one room only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import orjson
import pytest

from roomserver.auth import CLOCK_SKEW_S, mint_token, verify_token
from roomserver.errors import Unauthorized
from roomserver.ids import Identity, Role

SECRET = "unit-test-secret-0123456789-abcdefghij"
OTHER_SECRET = "another-secret-9876543210-zyxwvutsrqpo"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "u1",
        "name": "Ann",
        "room": "r1",
        "role": "member",
        "exp": int(time.time()) + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hand_token(header: dict[str, Any], body: dict[str, Any], secret: str | None) -> str:
    """A JWT built without PyJWT; signed with HMAC of the header's algorithm, or unsigned."""
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(body))}"
    if secret is None:
        return signing_input + "."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[header["alg"]]
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def hs256(body: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(body, secret, algorithm="HS256")


def test_mint_verify_round_trip() -> None:
    token = mint_token(SECRET, room="r1", user="u7", name="Ann", role="moderator")
    identity = verify_token(SECRET, token, "r1")
    assert identity == Identity(user="u7", name="Ann", role=Role.MODERATOR)
    assert identity.role is Role.MODERATOR
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert decoded["room"] == "r1"
    assert decoded["exp"] - decoded["iat"] == 6 * 3600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


@pytest.mark.parametrize("role", ["host", "moderator", "member"])
def test_every_contract_role_round_trips(role: str) -> None:
    token = mint_token(SECRET, room="r1", user="u1", name="N", role=role)
    assert verify_token(SECRET, token, "r1").role == Role(role)


def test_ttl_sets_exp() -> None:
    token = mint_token(SECRET, room="r1", user="u1", name="N", role="host", ttl_s=60, now=1000)
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert (decoded["iat"], decoded["exp"]) == (1000, 1060)


def test_expired_token_is_unauthorized() -> None:
    token = mint_token(
        SECRET, room="r1", user="u1", name="N", role="member", ttl_s=60, now=time.time() - 3600
    )
    with pytest.raises(Unauthorized) as info:
        verify_token(SECRET, token, "r1")
    assert info.value.message == "token expired"
    assert info.value.code == "unauthorized"


def test_token_signed_with_another_secret() -> None:
    token = mint_token(OTHER_SECRET, room="r1", user="u1", name="N", role="host")
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(SECRET, token, "r1")


def test_token_for_another_room() -> None:
    token = mint_token(SECRET, room="r1", user="u1", name="N", role="host")
    with pytest.raises(Unauthorized, match="another room"):
        verify_token(SECRET, token, "r2")


def test_tampered_payload_is_refused() -> None:
    token = mint_token(SECRET, room="r1", user="u1", name="N", role="member")
    header, _, signature = token.split(".")
    forged = b64url(orjson.dumps(claims(role="host")))
    with pytest.raises(Unauthorized):
        verify_token(SECRET, f"{header}.{forged}.{signature}", "r1")


def test_alg_none_is_refused() -> None:
    token = hand_token({"alg": "none", "typ": "JWT"}, claims(role="host"), None)
    assert token.endswith(".")
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(SECRET, token, "r1")


def test_hs512_header_is_refused_even_when_signed_with_the_secret() -> None:
    token = hand_token({"alg": "HS512", "typ": "JWT"}, claims(), SECRET)
    # The same construction with HS256 is accepted, so only the algorithm differs.
    good = hand_token({"alg": "HS256", "typ": "JWT"}, claims(), SECRET)
    assert verify_token(SECRET, good, "r1").user == "u1"
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(SECRET, token, "r1")


@pytest.mark.parametrize("role", ["admin", "Host", "", "cohost", 1, None])
def test_forged_role_claim_is_refused(role: Any) -> None:
    body = claims()
    body["role"] = role
    with pytest.raises(Unauthorized):
        verify_token(SECRET, hs256(body), "r1")


def test_forged_admin_role_message_names_role() -> None:
    with pytest.raises(Unauthorized, match="role"):
        verify_token(SECRET, hs256(claims(role="admin")), "r1")


@pytest.mark.parametrize("missing", ["sub", "name", "room", "role", "exp"])
def test_every_claim_is_required(missing: str) -> None:
    body = claims()
    del body[missing]
    assert missing not in body
    with pytest.raises(Unauthorized):
        verify_token(SECRET, hs256(body), "r1")


def test_complete_hand_built_claims_pass() -> None:
    # The control for the test above: the same claims with nothing removed verify.
    assert verify_token(SECRET, hs256(claims()), "r1") == Identity("u1", "Ann", Role.MEMBER)


@pytest.mark.parametrize("claim", ["sub", "name"])
@pytest.mark.parametrize(("length", "ok"), [(0, False), (1, True), (64, True), (65, False)])
def test_claim_lengths(claim: str, length: int, ok: bool) -> None:
    body = claims(**{claim: "x" * length})
    token = hs256(body)
    if ok:
        identity = verify_token(SECRET, token, "r1")
        assert (identity.user if claim == "sub" else identity.name) == "x" * length
    else:
        with pytest.raises(Unauthorized):
            verify_token(SECRET, token, "r1")


@pytest.mark.parametrize("claim", ["sub", "name"])
@pytest.mark.parametrize("length", [0, 65])
def test_mint_refuses_bad_claim_lengths(claim: str, length: int) -> None:
    kwargs: dict[str, Any] = {"room": "r1", "user": "u1", "name": "N", "role": "member"}
    kwargs["user" if claim == "sub" else "name"] = "x" * length
    with pytest.raises(Unauthorized, match=claim):
        mint_token(SECRET, **kwargs)


@pytest.mark.parametrize("value", [123, ["u1"], {"id": "u1"}])
def test_non_string_name_claim_is_refused(value: Any) -> None:
    with pytest.raises(Unauthorized):
        verify_token(SECRET, hs256(claims(name=value)), "r1")


def test_malformed_token_is_unauthorized() -> None:
    for garbage in ("", "abc", "a.b.c", "x" * 100):
        with pytest.raises(Unauthorized):
            verify_token(SECRET, garbage, "r1")


def test_a_token_whose_role_was_edited_is_refused() -> None:
    """Change member -> host in the payload and keep the signature: the signature breaks."""
    token = mint_token(SECRET, room="r", user="u", name="U", role="member")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "host"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = ".".join((header, forged_payload, signature))
    with pytest.raises(Unauthorized):
        verify_token(SECRET, forged, "r")


# -- the join-path verifier against PyJWT ----------------------------------------------


def pyjwt_accepts(token: str) -> bool:
    try:
        jwt.decode(token, SECRET, algorithms=["HS256"], options={"require": list(REQUIRED)})
    except jwt.InvalidTokenError:
        return False
    return True


def ours_accepts(token: str) -> bool:
    try:
        verify_token(SECRET, token, "r1")
    except Unauthorized:
        return False
    return True


REQUIRED = ("sub", "name", "room", "role", "exp")
NOW = int(time.time())
HEADER = {"alg": "HS256", "typ": "JWT"}
# Claim sets around each rule PyJWT applies (no leeway): each is signed correctly, so
# only the claims decide.
CLAIM_CASES: list[dict[str, Any]] = [
    claims(),
    claims(exp=NOW - 1),
    claims(exp=NOW + 1),
    claims(exp=str(NOW + 100)),
    claims(iat=NOW - 10),
    claims(iat=NOW + 100),
    claims(iat="soon"),
    claims(nbf=NOW - 10),
    claims(nbf=NOW + 100),
    claims(nbf=[1]),
    claims(aud="someone"),
    claims(aud=""),
    claims(jti="abc"),
    claims(jti=5),
    claims(iss="anyone"),
]


@pytest.mark.parametrize("body", CLAIM_CASES)
def test_claim_rules_agree_with_pyjwt(body: dict[str, Any]) -> None:
    token = hand_token(HEADER, body, SECRET)
    # PyJWT before 2.10 turned a numeric string into a number, later ones refuse it;
    # ours wants a JSON number whatever PyJWT version is installed.
    if isinstance(body.get("exp"), str):
        assert not ours_accepts(token)
    else:
        assert ours_accepts(token) == pyjwt_accepts(token)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_a_token_from_a_clock_a_little_ahead_is_accepted_further_ahead_refused(
    claim: str,
) -> None:
    now = int(time.time())
    ahead = hand_token(HEADER, claims(**{claim: now + CLOCK_SKEW_S - 10}), SECRET)
    assert ours_accepts(ahead)  # PyJWT without leeway refuses it: the one difference
    assert not pyjwt_accepts(ahead)
    too_far = hand_token(HEADER, claims(**{claim: now + CLOCK_SKEW_S + 10}), SECRET)
    assert not ours_accepts(too_far)


def test_expiry_gets_no_leeway() -> None:
    assert not ours_accepts(hand_token(HEADER, claims(exp=int(time.time()) - 1), SECRET))


def test_the_claim_cases_include_both_outcomes() -> None:
    outcomes = {pyjwt_accepts(hand_token(HEADER, body, SECRET)) for body in CLAIM_CASES}
    assert outcomes == {True, False}


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def mutations(token: str) -> list[str]:
    """Every token one character edit away in the signed part, plus cut and padded forms."""
    out = []
    for i, char in enumerate(token):
        for replacement in ("A", "_", "=", "."):
            if replacement != char:
                out.append(token[:i] + replacement + token[i + 1 :])
    out += [token[:-1], token + "=", token + "A", token + "."]
    out += ["." + token, token.replace(".", "..", 1)]
    return out


def test_whatever_ours_accepts_pyjwt_accepts() -> None:
    token = mint_token(SECRET, room="r1", user="u1", name="Ann", role="member")
    accepted = [t for t in mutations(token) if ours_accepts(t)]
    assert all(pyjwt_accepts(t) for t in accepted)
    # Not even an edit of the last signature character's unused low bits (same bytes,
    # another spelling) passes: only the canonical base64url is taken.
    assert accepted == []
    assert ours_accepts(token)


def test_a_non_canonical_spelling_of_the_signature_is_refused() -> None:
    token = mint_token(SECRET, room="r1", user="u1", name="Ann", role="member")
    head, _, signature = token.rpartition(".")
    last = ALPHABET.index(signature[-1])  # 43 characters: the last one's low 2 bits are unused
    for low_bits in (1, 2, 3):
        respelled = f"{head}.{signature[:-1]}{ALPHABET[last ^ low_bits]}"
        assert base64.urlsafe_b64decode(respelled.rpartition(".")[2] + "=") == (
            base64.urlsafe_b64decode(signature + "=")
        )
        with pytest.raises(Unauthorized, match="invalid token"):
            verify_token(SECRET, respelled, "r1")


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "crit": ["exp"]},
        {"alg": "HS256", "b64": False},
        {"alg": "hs256"},
        {"typ": "JWT"},
    ],
)
def test_unusual_headers_are_refused(header: dict[str, Any]) -> None:
    """Signed with HS256 and the right secret, yet refused for the header alone."""
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims()))}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(SECRET, f"{signing_input}.{b64url(signature)}", "r1")


@pytest.mark.parametrize("edit", ["%", " ", "+", "/", "\u00e9"])
def test_characters_outside_base64url_are_refused(edit: str) -> None:
    token = mint_token(SECRET, room="r1", user="u1", name="Ann", role="member")
    header, payload, signature = token.split(".")
    forgeries = (f"{header}.{payload}.{signature}{edit}", f"{header}{edit}.{payload}.{signature}")
    for forged in forgeries:
        with pytest.raises(Unauthorized, match="invalid token"):
            verify_token(SECRET, forged, "r1")


def test_a_huge_token_is_refused_unread() -> None:
    body = claims(pad="x" * 5000)
    token = hs256(body)
    assert pyjwt_accepts(token)
    with pytest.raises(Unauthorized, match="too long"):
        verify_token(SECRET, token, "r1")


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b'"text"'])
def test_a_payload_that_is_not_an_object_is_refused(payload: bytes) -> None:
    signing_input = f"{b64url(orjson.dumps(HEADER))}.{b64url(payload)}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(SECRET, f"{signing_input}.{b64url(signature)}", "r1")
