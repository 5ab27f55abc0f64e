"""Client tokens (HS256 / RS256 / ES256), the algorithm allow-list, and API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushgate.auth import ApiKeys, ClientToken, Identity, TokenCodec, check_id, new_secret
from pushgate.errors import InvalidRequest, TokenExpired, Unauthorized

SECRET = "s3cret-for-tests-only-" + "0123456789abcdef" * 3  # 70 bytes: OK for HS512


def _pems(private: Any) -> tuple[str, str]:
    priv = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    pub = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return priv, pub


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    return _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def other_rsa_keys() -> tuple[str, str]:
    return _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_keys() -> tuple[str, str]:
    return _pems(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def other_ec_keys() -> tuple[str, str]:
    return _pems(ec.generate_private_key(ec.SECP256R1()))


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 600, **extra}


def hs(**extra: Any) -> str:
    return jwt.encode(claims(**extra), SECRET, algorithm="HS256")


HS = TokenCodec(algorithms=["HS256"], secret=SECRET)


def rejected(codec: TokenCodec, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        codec.verify(token)
    return info.value


def _verdict(codec: TokenCodec, token: str) -> tuple[str, str]:
    try:
        return "ok", codec.verify(token).identity.user
    except Unauthorized as e:
        return type(e).__name__, e.message


def _b64(data: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


@pytest.mark.parametrize(("aud", "iss"), [(None, None), ("api", None), (None, "me")])
def test_one_algorithm_codec_words_every_refusal_as_the_general_path(
    aud: str | None, iss: str | None
) -> None:
    # With one accepted algorithm, verify() decodes once and words refusals itself; a codec
    # accepting several algorithms takes the general path (header first). Same verdicts.
    one = TokenCodec(algorithms=["HS256"], secret=SECRET, audience=aud, issuer=iss)
    several = TokenCodec(algorithms=["HS256", "HS384"], secret=SECRET, audience=aud, issuer=iss)
    now = int(time.time())
    tokens = [
        "", "x", "a.b", "a.b.c", hs(), hs(exp=now - 60), hs(aud="api"), hs(aud="web"),
        hs(iss="me"), hs(iss="you"), hs(nbf=now + 600), hs(sub="bad user"), hs(exp="soon"),
        jwt.encode(claims(), "another-secret-" * 4, algorithm="HS256"),
        jwt.encode({"exp": now + 60}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
        jwt.encode(claims(), SECRET, algorithm="HS512"),
        _b64({"alg": "HS256"}) + "." + _b64([1]) + ".c2ln",
        _b64({"alg": "none"}) + "." + _b64(claims()) + ".",
        _b64({"alg": "HS256", "kid": 1}) + ".e30.c2ln",
    ]
    verdicts = [(_verdict(one, t), _verdict(several, t)) for t in tokens]
    assert [a for a, b in verdicts if a != b] == []
    assert {a[0] for a, _ in verdicts} == {"ok", "Unauthorized", "TokenExpired"}


# --- HS256 -------------------------------------------------------------------------------


def test_hs256_token_yields_the_identity_and_expiry() -> None:
    exp = int(time.time()) + 600
    token = jwt.encode({"sub": "alice", "ws": "w1", "dev": "phone", "app": "chat", "exp": exp},
                       SECRET, algorithm="HS256")
    assert HS.verify(token) == ClientToken(Identity("alice", "w1", "phone", "chat"), float(exp))


@pytest.mark.parametrize("ws", [None, ""])
def test_missing_or_empty_workspace_is_default(ws: str | None) -> None:
    extra = {} if ws is None else {"ws": ws}
    assert HS.verify(hs(**extra)).identity == Identity("alice", "default", "", "")


def test_hs256_token_signed_with_another_secret_is_rejected() -> None:
    token = jwt.encode(claims(), "another-secret-of-sufficient-length!", algorithm="HS256")
    err = rejected(HS, token)
    assert "signature" in err.message
    assert err.field == "token"
    assert not isinstance(err, TokenExpired)


def test_tampered_payload_is_rejected() -> None:
    head, _, sig = hs().split(".")
    forged = base64.urlsafe_b64encode(orjson.dumps(claims(sub="mallory"))).rstrip(b"=").decode()
    assert "signature" in rejected(HS, f"{head}.{forged}.{sig}").message


def test_expired_token_is_token_expired() -> None:
    err = rejected(HS, hs(exp=int(time.time()) - 60))
    assert isinstance(err, TokenExpired)
    assert err.code == "token_expired"


@pytest.mark.parametrize("exp", [True, False])
def test_boolean_exp_is_a_bad_token_not_an_expired_one(exp: bool) -> None:
    # PyJWT reads true as 1 (1970): a client told "expired" would fetch a new token of
    # the same kind and loop; "invalid" (4100 / 401 unauthorized) stops it
    err = rejected(HS, hs(exp=exp))
    assert not isinstance(err, TokenExpired)
    assert err.code == "unauthorized" and "'exp'" in err.message


def test_an_exp_too_large_for_a_date_is_a_bad_token_not_a_crash() -> None:
    # an integer PyJWT accepts, beyond what a float holds: 4100 / 401, not a dropped
    # connection or a 500 the client retries
    err = rejected(HS, hs(exp=10**400))
    assert not isinstance(err, TokenExpired)
    assert err.code == "unauthorized" and "'exp'" in err.message


def test_a_token_minted_by_a_host_whose_clock_runs_ahead_is_accepted() -> None:
    # iat is informational: hubs whose clocks differ by more than the leeway still take
    # each other's fresh tokens
    assert HS.verify(hs(iat=int(time.time()) + 60)).identity.user == "alice"


def test_a_token_used_before_its_nbf_is_refused() -> None:
    err = rejected(HS, hs(nbf=int(time.time()) + 60))
    assert not isinstance(err, TokenExpired) and err.code == "unauthorized"
    assert HS.verify(hs(nbf=int(time.time()) + 2)).identity.user == "alice"  # the leeway


def test_token_just_expired_is_accepted_within_the_leeway() -> None:
    assert HS.verify(hs(exp=int(time.time()) - 2)).identity.user == "alice"


def test_zero_leeway_rejects_a_just_expired_token() -> None:
    codec = TokenCodec(algorithms=["HS256"], secret=SECRET, leeway_s=0)
    assert isinstance(rejected(codec, hs(exp=int(time.time()) - 2)), TokenExpired)


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_token_without_required_claim_is_rejected(missing: str) -> None:
    c = claims()
    del c[missing]
    err = rejected(HS, jwt.encode(c, SECRET, algorithm="HS256"))
    assert missing in err.message
    assert not isinstance(err, TokenExpired)


@pytest.mark.parametrize(
    "extra",
    [
        {"sub": ""},
        {"sub": "x" * 256},
        {"sub": "a\tb"},
        {"ws": 5},
        {"dev": ["phone"]},
        {"app": "a\x01"},
    ],
)
def test_token_with_bad_identity_claim_is_unauthorized(extra: dict[str, Any]) -> None:
    err = rejected(HS, hs(**extra))
    assert err.field == "token"
    assert err.http_status == 401


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "...."])
def test_missing_or_malformed_token_is_unauthorized(token: str) -> None:
    err = rejected(HS, token)
    assert err.field == "token"


# --- algorithm allow-list ----------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_codec_refuses_to_allow_none(alg: str) -> None:
    with pytest.raises(ValueError, match="none"):
        TokenCodec(algorithms=["HS256", alg], secret=SECRET)


def test_unsigned_none_token_is_rejected() -> None:
    token = jwt.encode(claims(), "", algorithm="none")
    assert "algorithm" in rejected(HS, token).message


def test_token_with_alg_outside_the_allow_list_is_rejected() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS512")
    assert "HS512" in rejected(HS, token).message


def test_hs256_token_forged_with_the_rsa_public_key_is_rejected(rsa_keys: tuple[str, str]) -> None:
    # classic algorithm-confusion attack: HMAC keyed with the public PEM
    _, pub = rsa_keys
    codec = TokenCodec(algorithms=["RS256", "HS256"], public_key=pub)

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(orjson.dumps(claims()))
    sig = b64(hmac.new(pub.encode(), signing_input, hashlib.sha256).digest())
    rejected(codec, (signing_input + b"." + sig).decode())


def test_hmac_keys_kept_between_decodes_verify_as_pyjwts_own(rsa_keys: tuple[str, str]) -> None:
    """pushgate keeps PyJWT's prepared HMAC keys between decodes (connect cost): tokens
    verify and fail exactly as with PyJWT's own algorithm, and a key that PyJWT refuses
    as an HMAC secret (a PEM public key) is refused on every call, never kept."""
    from jwt.algorithms import HMACAlgorithm

    stock = HMACAlgorithm(HMACAlgorithm.SHA256)
    secrets_ = [SECRET, SECRET + "x", b"\x00" * 40, "é" * 40]
    for key in secrets_ * 2:  # the second round decodes with kept keys
        for other in secrets_:
            token = jwt.encode(claims(), other, algorithm="HS256")
            signing_input, _, sig = token.encode().rpartition(b".")
            expected = stock.verify(signing_input, stock.prepare_key(key),
                                    base64.urlsafe_b64decode(sig + b"=" * (-len(sig) % 4)))
            try:
                jwt.decode(token, key, algorithms=["HS256"])
                verified = True
            except jwt.InvalidSignatureError:
                verified = False
            assert verified is expected is (key == other)
    _, pub = rsa_keys
    for _ in range(2):
        with pytest.raises(jwt.InvalidKeyError, match="asymmetric key"):
            jwt.decode(jwt.encode(claims(), SECRET, algorithm="HS256"), pub,
                       algorithms=["HS256"])


def test_hs_token_is_rejected_when_only_asymmetric_keys_are_configured(
    rsa_keys: tuple[str, str],
) -> None:
    codec = TokenCodec(algorithms=["RS256", "HS256"], public_key=rsa_keys[1])
    rejected(codec, hs())


def test_token_rejected_for_lack_of_a_key_names_the_token_field(
    rsa_keys: tuple[str, str],
) -> None:
    codec = TokenCodec(algorithms=["RS256", "HS256"], public_key=rsa_keys[1])
    assert rejected(codec, hs()).field == "token"


# --- RS256 / ES256 -------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_asymmetric_token_is_accepted(alg: str, rsa_keys: tuple[str, str],
                                      ec_keys: tuple[str, str]) -> None:
    priv, pub = rsa_keys if alg == "RS256" else ec_keys
    codec = TokenCodec(algorithms=[alg], public_key=pub)
    token = jwt.encode(claims(dev="d1"), priv, algorithm=alg)
    assert codec.verify(token).identity == Identity("alice", "default", "d1", "")


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_asymmetric_token_signed_with_another_key_is_rejected(
    alg: str,
    rsa_keys: tuple[str, str], other_rsa_keys: tuple[str, str],
    ec_keys: tuple[str, str], other_ec_keys: tuple[str, str],
) -> None:
    (_, pub), (other_priv, _) = (
        (rsa_keys, other_rsa_keys) if alg == "RS256" else (ec_keys, other_ec_keys))
    codec = TokenCodec(algorithms=[alg], public_key=pub)
    assert "signature" in rejected(codec, jwt.encode(claims(), other_priv, algorithm=alg)).message


def test_es256_token_is_rejected_by_an_rs256_only_codec(rsa_keys: tuple[str, str],
                                                       ec_keys: tuple[str, str]) -> None:
    codec = TokenCodec(algorithms=["RS256"], public_key=rsa_keys[1])
    rejected(codec, jwt.encode(claims(), ec_keys[0], algorithm="ES256"))


def test_public_key_may_be_a_path_to_a_pem_file(tmp_path: Path,
                                                 ec_keys: tuple[str, str]) -> None:
    priv, pub = ec_keys
    (tmp_path / "pub.pem").write_text(pub)
    (tmp_path / "priv.pem").write_text(priv)
    codec = TokenCodec(algorithms=["ES256"], public_key=str(tmp_path / "pub.pem"),
                       private_key=str(tmp_path / "priv.pem"))
    token, _ = codec.mint(Identity("bob"), 60)
    assert codec.verify(token).identity.user == "bob"


# --- aud / iss -----------------------------------------------------------------------------


AUD = TokenCodec(algorithms=["HS256"], secret=SECRET, audience="pushgate", issuer="idp")


def test_matching_aud_and_iss_are_accepted() -> None:
    assert AUD.verify(hs(aud="pushgate", iss="idp")).identity.user == "alice"


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        ({"aud": "other", "iss": "idp"}, "aud"),
        ({"iss": "idp"}, "aud"),
        ({"aud": "pushgate", "iss": "evil"}, "iss"),
        ({"aud": "pushgate"}, "iss"),
    ],
)
def test_wrong_or_missing_aud_or_iss_is_rejected(extra: dict[str, Any], word: str) -> None:
    assert word in rejected(AUD, hs(**extra)).message


def test_aud_is_ignored_when_none_is_configured() -> None:
    assert HS.verify(hs(aud="anything")).identity.user == "alice"


# --- minting -------------------------------------------------------------------------------


def test_minted_hs256_token_round_trips() -> None:
    ident = Identity("alice", "w1", "phone", "chat")
    token, parsed = AUD.mint(ident, 60)
    assert parsed.identity == ident
    assert AUD.verify(token) == parsed
    assert time.time() + 55 < parsed.expires_at <= time.time() + 61
    raw = jwt.decode(token, SECRET, algorithms=["HS256"], audience="pushgate")
    assert (raw["aud"], raw["iss"]) == ("pushgate", "idp")


def test_minted_token_omits_empty_device_and_application() -> None:
    token, _ = HS.mint(Identity("alice"), 60)
    raw = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert "dev" not in raw
    assert "app" not in raw
    assert raw["ws"] == "default"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_minted_asymmetric_token_verifies_with_the_public_key(
    alg: str, rsa_keys: tuple[str, str], ec_keys: tuple[str, str]
) -> None:
    priv, pub = rsa_keys if alg == "RS256" else ec_keys
    minter = TokenCodec(algorithms=[alg], public_key=pub, private_key=priv)
    assert minter.can_mint
    token, parsed = minter.mint(Identity("carol", device="d"), 60)
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert TokenCodec(algorithms=[alg], public_key=pub).verify(token) == parsed


def test_codec_without_signing_key_cannot_mint(rsa_keys: tuple[str, str]) -> None:
    codec = TokenCodec(algorithms=["RS256"], public_key=rsa_keys[1], secret=SECRET)
    assert codec.can_mint is False
    with pytest.raises(RuntimeError, match="RS256"):
        codec.mint(Identity("a"), 60)


def test_minted_token_is_expired_after_its_ttl() -> None:
    codec = TokenCodec(algorithms=["HS256"], secret=SECRET, leeway_s=0)
    token, _ = codec.mint(Identity("a"), -10)
    with pytest.raises(TokenExpired):
        codec.verify(token)


# --- ids, API keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", 5, "x" * 256, "a\nb", "\x1f", "a\x7f", "\x85", " ", "\u3000 "])
def test_check_id_rejects_bad_ids_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_id(value, "users")
    assert info.value.field == "users"


def test_check_id_accepts_max_length_and_unicode() -> None:
    assert check_id("x" * 255, "f") == "x" * 255
    assert check_id("élodie 😀", "f") == "élodie 😀"
    assert check_id(None, "f", required=False) == ""


KEYS = ApiKeys(["key-one", "", "key-two"])


@pytest.mark.parametrize("header", ["Bearer key-one", "bearer key-two", "Bearer  key-one "])
def test_valid_api_key_is_accepted(header: str) -> None:
    KEYS.check(header)


@pytest.mark.parametrize(
    "header", [None, "", "key-one", "Basic key-one", "Bearer", "Bearer ", "Bearer key-on",
               "Bearer key-one-x", "Bearer KEY-ONE"],
)
def test_bad_api_key_is_unauthorized_naming_authorization(header: str | None) -> None:
    with pytest.raises(Unauthorized) as info:
        KEYS.check(header)
    assert info.value.field == "Authorization"


def test_empty_configured_key_never_matches() -> None:
    with pytest.raises(Unauthorized):
        ApiKeys([""]).check("Bearer ")
    with pytest.raises(Unauthorized):
        ApiKeys([]).check("Bearer anything")


def test_new_secrets_are_long_and_distinct() -> None:
    a, b = new_secret(), new_secret()
    assert a != b
    assert len(a) >= 40
