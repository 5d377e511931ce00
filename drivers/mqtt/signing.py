"""Signed dispatch messages: JWS flattened JSON serialization (RFC 7515 section 7.2.2).

Why JWS and not a signature field inside the setpoint: a signature over re-serialised JSON needs both
ends to canonicalise numbers and key order identically (RFC 8785), a classic source of "valid on one
side, invalid on the other". JWS signs the exact bytes it carries, and every operator platform has a
JOSE library. A signed message looks like::

    {"protected": b64url('{"alg":"HS256","kid":"op-2026","station":"hub-1"}'),
     "payload":   b64url(<the setpoint or schedule JSON>),
     "signature": b64url(sig over ASCII(protected + "." + payload))}

``alg`` is ``HS256`` (HMAC-SHA256) or ``EdDSA`` (Ed25519). The verifier accepts only the algorithm the
station is configured for (no algorithm confusion, no ``none``), and ``kid`` must match when a key id is
configured. ``station`` names the station the message is for, inside the signed header: an operator
signs a whole fleet with one key, so without it a setpoint signed for station A, captured and published
to station B's topic, would verify there too (the topic itself is not signed). A verifier built for a
station refuses a header that names no station or another one. Replay protection of the rest is not
here: the dispatch manager checks ``seq`` and ``issued_at``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.dispatch import Reason, SignatureError, Verifier, no_signature

if TYPE_CHECKING:
    from station.config import SigningConfig

ALG_FOR_MODE = {"hmac-sha256": "HS256", "ed25519": "EdDSA"}
MIN_HMAC_KEY_BYTES = 32
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_ENVELOPE_KEYS = frozenset(("protected", "payload", "signature"))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------------------- signing (operator side)


def sign(content: bytes, key: bytes | Ed25519PrivateKey, kid: str | None = None,
         station: str | None = None) -> bytes:
    """Wrap ``content`` in a JWS envelope: HS256 for a bytes key, EdDSA for an Ed25519 private key;
    ``station`` goes into the protected header (the station the message is for).
    Used by the operator tooling, the HIL grid-operator publisher, the tests and the benchmark."""
    header: dict[str, Any] = {"alg": "EdDSA" if isinstance(key, Ed25519PrivateKey) else "HS256"}
    if kid is not None:
        header["kid"] = kid
    if station is not None:
        header["station"] = station
    protected = b64url(json.dumps(header, separators=(",", ":")).encode())
    payload = b64url(content)
    signing_input = f"{protected}.{payload}".encode("ascii")
    if isinstance(key, Ed25519PrivateKey):
        sig = key.sign(signing_input)
    else:
        sig = hmac.new(key, signing_input, hashlib.sha256).digest()
    return json.dumps({"protected": protected, "payload": payload, "signature": b64url(sig)},
                      separators=(",", ":")).encode()


# ---------------------------------------------------------------------------- verifying (station side)


class JwsVerifier:
    """A :data:`station.dispatch.Verifier` for one algorithm and key; with ``station``, only for messages
    whose signed header names that station."""

    def __init__(self, key: bytes | Ed25519PublicKey, kid: str | None = None, station: str | None = None) -> None:
        if isinstance(key, Ed25519PublicKey):
            self.alg = "EdDSA"
        else:
            if len(key) < MIN_HMAC_KEY_BYTES:
                raise ValueError(f"HMAC key must be at least {MIN_HMAC_KEY_BYTES} bytes, got {len(key)}")
            self.alg = "HS256"
        self._key = key
        self._kid = kid
        self._station = station

    def __call__(self, message: bytes) -> bytes:
        try:
            env = json.loads(message)
        except (ValueError, RecursionError) as exc:
            raise SignatureError(Reason.MALFORMED_JSON, f"not a JSON JWS envelope: {str(exc)[:120]}") from None
        if not isinstance(env, dict) or not _ENVELOPE_KEYS <= env.keys():
            raise SignatureError(Reason.SIGNATURE_MISSING,
                                 "signed messages are required: expected a JWS object with protected, payload, signature")
        if env.keys() != _ENVELOPE_KEYS:
            raise SignatureError(Reason.SIGNATURE_INVALID,
                                 f"unexpected JWS member(s): {', '.join(sorted(env.keys() - _ENVELOPE_KEYS))}")
        protected, payload, signature = env["protected"], env["payload"], env["signature"]
        if not all(isinstance(x, str) for x in (protected, payload, signature)):
            raise SignatureError(Reason.SIGNATURE_INVALID, "JWS members must be base64url strings")
        try:
            header = json.loads(b64url_decode(protected))
            sig = b64url_decode(signature)
            content = b64url_decode(payload)
        except (ValueError, binascii.Error, RecursionError):
            raise SignatureError(Reason.SIGNATURE_INVALID, "JWS member is not valid base64url/JSON") from None
        if not isinstance(header, dict):
            raise SignatureError(Reason.SIGNATURE_INVALID, "JWS protected header must be a JSON object")
        if header.get("alg") != self.alg:
            raise SignatureError(Reason.SIGNATURE_INVALID,
                                 f"alg {header.get('alg')!r} is not the configured {self.alg!r}")
        if "crit" in header:
            raise SignatureError(Reason.SIGNATURE_INVALID, "JWS crit extensions are not supported")
        if self._kid is not None and header.get("kid") != self._kid:
            raise SignatureError(Reason.SIGNATURE_INVALID, f"kid {header.get('kid')!r} is not the configured key id")
        if self._station is not None and header.get("station") != self._station:
            named = header.get("station")
            raise SignatureError(Reason.SIGNATURE_INVALID,
                                 "signed header names no station" if named is None else
                                 f"signed for station {str(named)[:64]!r}, this is {self._station!r}")
        signing_input = f"{protected}.{payload}".encode("ascii")
        if isinstance(self._key, Ed25519PublicKey):
            try:
                self._key.verify(sig, signing_input)
            except InvalidSignature:
                raise SignatureError(Reason.SIGNATURE_INVALID, "Ed25519 signature does not verify") from None
        elif not hmac.compare_digest(sig, hmac.new(self._key, signing_input, hashlib.sha256).digest()):
            raise SignatureError(Reason.SIGNATURE_INVALID, "HMAC-SHA256 signature does not verify")
        return content


def load_hmac_key(path: Path) -> bytes:
    """The HMAC key is the file's content without surrounding whitespace (e.g. ``openssl rand -hex 32``)."""
    return path.read_bytes().strip()


def load_ed25519_public_key(path: Path) -> Ed25519PublicKey:
    """A PEM SubjectPublicKeyInfo file (``openssl pkey -in op.key -pubout``)."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def verifier_from_config(signing: SigningConfig, station_id: str, base_dir: Path = Path(".")) -> Verifier:
    """Build the dispatch verifier of station ``station_id`` from ``mqtt.signing`` (key paths relative
    to the config file); it accepts only messages signed for this station."""
    if signing.mode == "none":
        return no_signature
    if not signing.key_file:
        raise ValueError("mqtt.signing.key_file: is required when signing mode is not 'none'")
    path = Path(signing.key_file)
    path = path if path.is_absolute() else base_dir / path
    if signing.mode == "hmac-sha256":
        return JwsVerifier(load_hmac_key(path), signing.key_id, station_id)
    return JwsVerifier(load_ed25519_public_key(path), signing.key_id, station_id)
