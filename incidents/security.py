"""Security helpers: password hashing, access tokens, AES-256-GCM, URL redaction, roles.

Pure functions over well-kept libraries (argon2-cffi, PyJWT, cryptography); nothing here reads
the environment or logs a secret. Callers pass secrets in from ``Settings``.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from incidents.records import Role

JWT_ALGORITHM = "HS256"
REDACTED = "***"
ROLE_RANK: dict[Role, int] = {Role.VIEWER: 0, Role.RESPONDER: 1, Role.ADMIN: 2}
EPHEMERAL_SECRET_ENVIRONMENTS = frozenset({"local", "test"})

_NONCE_BYTES = 12
_KEY_BYTES = 32
_HKDF_INFO = b"incidents/aes-256-gcm/v1"
_SECRET_QUERY_KEYS = frozenset({"password", "pass", "pwd", "token", "secret", "api_key", "apikey"})

_hasher = PasswordHasher()


class ConfigurationError(RuntimeError):
    """A setting required in this environment is missing or unusable."""


class TokenError(Exception):
    """An access token is missing a claim, malformed, badly signed or expired."""


# --- roles ----------------------------------------------------------------------------------


def has_role(actual: Role | str, required: Role | str) -> bool:
    """Whether ``actual`` is at least ``required`` in the order viewer < responder < admin."""
    return ROLE_RANK[Role(actual)] >= ROLE_RANK[Role(required)]


# --- passwords ------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False on mismatch or an unusable hash (never raises)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def burn_password_check(password: str) -> None:
    """Spend the time of one verification so an unknown username is not faster than a bad one."""
    verify_password(_DUMMY_HASH, password)


# --- access tokens --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    role: Role
    tenant: str
    issued_at: datetime
    expires_at: datetime


def create_access_token(
    *,
    subject: str,
    role: Role | str,
    tenant: str,
    secret: str,
    expires_in: timedelta,
    now: datetime | None = None,
) -> str:
    issued = now or datetime.now(UTC)
    payload = {
        "sub": subject,
        "role": Role(role).value,
        "tenant": tenant,
        "iat": int(issued.timestamp()),
        "exp": int((issued + expires_in).timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM)


def decode_access_token(token: str, secret: str) -> TokenClaims:
    """Verify signature, algorithm and expiry; raise ``TokenError`` with a reason otherwise."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "role", "tenant"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token has expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("token is invalid") from exc
    try:
        role = Role(payload["role"])
    except ValueError as exc:
        raise TokenError("token has an unknown role") from exc
    sub, tenant = payload["sub"], payload["tenant"]
    if not isinstance(sub, str) or not isinstance(tenant, str) or not sub or not tenant:
        raise TokenError("token is invalid")
    return TokenClaims(
        subject=sub,
        role=role,
        tenant=tenant,
        issued_at=datetime.fromtimestamp(payload["iat"], UTC),
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
    )


_EPHEMERAL_JWT_SECRET = secrets.token_urlsafe(48)


def resolve_jwt_secret(configured: str | None, environment: str) -> tuple[str, bool]:
    """The signing secret and whether it is an ephemeral per-process one.

    Local and test runs may go without ``JWT_SECRET`` (tokens then die with the process);
    any other environment must configure it, or the service refuses to start.
    """
    if configured:
        return configured, False
    if environment in EPHEMERAL_SECRET_ENVIRONMENTS:
        return _EPHEMERAL_JWT_SECRET, True
    raise ConfigurationError(
        f"JWT_SECRET must be set when ENVIRONMENT={environment!r} "
        f"(only {sorted(EPHEMERAL_SECRET_ENVIRONMENTS)} may use a random per-process secret)"
    )


# --- AES-256-GCM ----------------------------------------------------------------------------


def derive_key(material: str | bytes) -> bytes:
    """A 32-byte AES key from ``ENCRYPTION_KEY``.

    64 hex characters or base64 (standard or URL-safe) of exactly 32 bytes are used as the raw
    key; anything else (a passphrase) is stretched with HKDF-SHA256. HKDF is not a password
    hash: a passphrase key is only as strong as the passphrase's entropy.
    """
    text = material.decode() if isinstance(material, bytes) else material
    text = text.strip()
    if not text:
        raise ConfigurationError("ENCRYPTION_KEY is empty")
    if len(text) == 2 * _KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    for altchars in (None, b"-_"):
        try:
            raw = base64.b64decode(text.encode("ascii"), altchars=altchars, validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(raw) == _KEY_BYTES:
            return raw
    hkdf = HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None, info=_HKDF_INFO)
    return hkdf.derive(text.encode("utf-8"))


def encrypt(plaintext: bytes, key: bytes, associated_data: bytes | None = None) -> bytes:
    """``nonce (12 bytes) || ciphertext+tag``, with a fresh random nonce per message."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def decrypt(blob: bytes, key: bytes, associated_data: bytes | None = None) -> bytes:
    """Inverse of ``encrypt``; raises ``cryptography.exceptions.InvalidTag`` if tampered with."""
    if len(blob) < _NONCE_BYTES + 16:
        raise ValueError("ciphertext is too short")
    return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data)


def encrypt_text(plaintext: str, key: bytes, associated_data: bytes | None = None) -> str:
    """``encrypt`` for text, as URL-safe base64 so it fits a text column or a JSON value."""
    return base64.urlsafe_b64encode(encrypt(plaintext.encode(), key, associated_data)).decode()


def decrypt_text(token: str, key: bytes, associated_data: bytes | None = None) -> str:
    return decrypt(base64.urlsafe_b64decode(token.encode()), key, associated_data).decode()


SEALED_PREFIX = "enc:v1:"
_SEALED_CONTEXT = b"incidents stored secret"


class SecretUnavailable(ValueError):
    """A sealed secret cannot be opened: no ``ENCRYPTION_KEY``, or another one."""


def seal_secret(text: str, key: bytes) -> str:
    """``text`` encrypted for storage (``enc:v1:`` + AES-256-GCM, URL-safe base64)."""
    if text.startswith(SEALED_PREFIX):
        return text
    return SEALED_PREFIX + encrypt_text(text, key, _SEALED_CONTEXT)


def open_secret(text: str, key: bytes | None) -> str:
    """Inverse of ``seal_secret``; text that was never sealed comes back as it is."""
    if not text.startswith(SEALED_PREFIX):
        return text
    if key is None:
        raise SecretUnavailable("a stored secret is encrypted but ENCRYPTION_KEY is not set")
    try:
        return decrypt_text(text[len(SEALED_PREFIX) :], key, _SEALED_CONTEXT)
    except (InvalidTag, ValueError, binascii.Error) as exc:
        raise SecretUnavailable(
            "a stored secret does not open with this ENCRYPTION_KEY (was it changed?)"
        ) from exc


# --- URLs -----------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with the password (and secret-looking query values) replaced by ``***``.

    ``postgresql://app:s3cret@db:5432/incidents`` -> ``postgresql://app:***@db:5432/incidents``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        if sep:
            netloc = f"{user}:{REDACTED}@{hostinfo}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode(
                [(k, REDACTED if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                safe="*",
            )
    # Replace in place rather than urlunsplit, which turns ``sqlite:///x`` into ``sqlite:/x``.
    redacted = url
    if netloc != parts.netloc:
        redacted = redacted.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    if query != parts.query:
        redacted = redacted.replace(f"?{parts.query}", f"?{query}", 1)
    return redacted
