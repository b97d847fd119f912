"""Security helpers: passwords, tokens, AES-256-GCM, URL redaction, role order."""

import base64
import os
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.exceptions import InvalidTag

from incidents.records import Role
from incidents.security import (
    ConfigurationError,
    TokenError,
    create_access_token,
    decode_access_token,
    decrypt,
    decrypt_text,
    derive_key,
    encrypt,
    encrypt_text,
    has_role,
    hash_password,
    needs_rehash,
    redact_url,
    resolve_jwt_secret,
    verify_password,
)

SECRET = "unit-test-secret-0123456789abcdef"


# --- passwords ------------------------------------------------------------------------------


def test_password_hash_round_trip_and_salting():
    h1, h2 = hash_password("correct horse"), hash_password("correct horse")
    assert h1.startswith("$argon2id$")
    assert h1 != h2  # random salt
    assert "correct horse" not in h1
    assert verify_password(h1, "correct horse")
    assert not verify_password(h1, "correct horsE")
    assert not needs_rehash(h1)


@pytest.mark.parametrize("bad_hash", ["", "plain-text", "$argon2id$v=19$broken"])
def test_verify_never_raises_on_unusable_hashes(bad_hash):
    assert verify_password(bad_hash, "anything") is False
    assert needs_rehash(bad_hash) is True


# --- tokens ---------------------------------------------------------------------------------


def token(**overrides) -> str:
    args = {
        "subject": "alice",
        "role": Role.RESPONDER,
        "tenant": "acme",
        "secret": SECRET,
        "expires_in": timedelta(minutes=5),
    }
    return create_access_token(**{**args, **overrides})


def test_token_round_trip_carries_the_claims():
    claims = decode_access_token(token(), SECRET)
    assert (claims.subject, claims.role, claims.tenant) == ("alice", Role.RESPONDER, "acme")
    assert claims.expires_at - claims.issued_at == timedelta(minutes=5)
    raw = jwt.decode(token(), SECRET, algorithms=["HS256"])
    assert set(raw) == {"sub", "role", "tenant", "iat", "exp"}


def test_expired_token_is_rejected_with_a_reason():
    old = token(now=datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(TokenError, match="expired"):
        decode_access_token(old, SECRET)


def test_token_signed_with_another_secret_is_rejected():
    with pytest.raises(TokenError, match="invalid"):
        decode_access_token(token(secret="another-secret-0123456789abcdefgh"), SECRET)


def test_unsigned_and_malformed_tokens_are_rejected():
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "alice", "role": "admin", "tenant": "acme", "iat": now, "exp": now + 60}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    for bad in (unsigned, "not.a.token", "", token()[:-3] + "abc"):
        with pytest.raises(TokenError):
            decode_access_token(bad, SECRET)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "alice", "role": "root", "tenant": "acme"},
        {"sub": "alice", "role": "admin"},
        {"role": "admin", "tenant": "acme"},
        {"sub": "", "role": "admin", "tenant": "acme"},
    ],
)
def test_tokens_with_missing_or_bad_claims_are_rejected(claims):
    now = int(datetime.now(UTC).timestamp())
    forged = jwt.encode({**claims, "iat": now, "exp": now + 60}, SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        decode_access_token(forged, SECRET)


def test_jwt_secret_is_required_outside_local_and_test():
    assert resolve_jwt_secret("configured", "production") == ("configured", False)
    local, ephemeral = resolve_jwt_secret(None, "local")
    assert ephemeral and len(local) >= 32
    assert resolve_jwt_secret("", "test") == (local, True)  # one per process
    for env in ("development", "staging", "production"):
        with pytest.raises(ConfigurationError, match="JWT_SECRET"):
            resolve_jwt_secret(None, env)


# --- AES-256-GCM ----------------------------------------------------------------------------


def test_key_material_formats():
    raw = os.urandom(32)
    assert derive_key(raw.hex()) == raw
    assert derive_key(base64.b64encode(raw).decode()) == raw
    assert derive_key(base64.urlsafe_b64encode(raw).decode()) == raw
    stretched = derive_key("a passphrase, not a key")
    assert len(stretched) == 32
    assert stretched == derive_key("a passphrase, not a key")
    assert stretched != derive_key("another passphrase")
    with pytest.raises(ConfigurationError):
        derive_key("   ")


def test_encrypt_round_trip_with_fresh_nonces():
    key = derive_key("k")
    a, b = encrypt(b"secret data", key, b"incident:1"), encrypt(b"secret data", key, b"incident:1")
    assert a != b
    assert b"secret data" not in a
    assert decrypt(a, key, b"incident:1") == b"secret data"
    assert decrypt_text(encrypt_text("grüße", key), key) == "grüße"


def test_tampering_wrong_key_or_context_is_detected():
    key = derive_key("k")
    blob = bytearray(encrypt(b"payload", key, b"ctx"))
    with pytest.raises(InvalidTag):
        decrypt(blob, derive_key("other"), b"ctx")
    with pytest.raises(InvalidTag):
        decrypt(bytes(blob), key, b"other ctx")
    blob[-1] ^= 1
    with pytest.raises(InvalidTag):
        decrypt(bytes(blob), key, b"ctx")
    with pytest.raises(ValueError):
        decrypt(b"short", key)


# --- URLs and roles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/inc", "postgresql://app:***@db:5432/inc"),
        ("postgresql://app:p@ss:w@db/inc", "postgresql://app:***@db/inc"),
        ("postgresql://app@db/inc", "postgresql://app@db/inc"),
        ("sqlite:///var/incidents.db", "sqlite:///var/incidents.db"),
        ("http://influx:8086?token=abc&org=x", "http://influx:8086?token=***&org=x"),
        ("postgresql://db/inc?sslmode=require", "postgresql://db/inc?sslmode=require"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("actual", "required", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.RESPONDER, False),
        (Role.RESPONDER, Role.VIEWER, True),
        (Role.RESPONDER, Role.ADMIN, False),
        (Role.ADMIN, Role.RESPONDER, True),
        ("admin", "viewer", True),
    ],
)
def test_role_order(actual, required, allowed):
    assert has_role(actual, required) is allowed
