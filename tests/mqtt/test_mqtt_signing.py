"""Signed dispatch (JWS HS256 / EdDSA) with replay protection, through the dispatch manager."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.mqtt.signing import JwsVerifier, b64url, b64url_decode, sign, verifier_from_config
from station.config import SigningConfig
from station.dispatch import DispatchManager, Reason
from tests.mqtt.setpoints import DEMO, NOW, encode, setpoint

HMAC_KEY = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


def hmac_manager(kid: str | None = None) -> DispatchManager:
    return DispatchManager.from_config(DEMO, JwsVerifier(HMAC_KEY, kid))


def test_hmac_signed_setpoint_is_accepted_and_unsigned_refused() -> None:
    m = hmac_manager()
    assert m.submit(sign(encode(setpoint(1)), HMAC_KEY), NOW)[0].accepted
    ack = m.submit(encode(setpoint(2)), NOW)[0]
    assert (ack.reason, ack.id) == (Reason.SIGNATURE_MISSING, None)
    assert m.submit(b"{oops", NOW)[0].reason is Reason.MALFORMED_JSON
    assert m.limits_at(NOW).source == "lease:sp-1"


@pytest.mark.parametrize("tamper", ["payload", "signature", "key", "alg-none", "alg-eddsa", "extra-member",
                                    "crit", "not-base64", "header-not-object"])
def test_tampered_or_wrong_envelopes_are_signature_invalid(tamper: str) -> None:
    m = hmac_manager()
    env = json.loads(sign(encode(setpoint(1)), HMAC_KEY))
    if tamper == "payload":
        env["payload"] = b64url(encode(setpoint(1, import_limit_kw=399.0)))
    elif tamper == "signature":
        sig = bytearray(b64url_decode(env["signature"]))
        sig[0] ^= 1
        env["signature"] = b64url(bytes(sig))
    elif tamper == "key":
        env = json.loads(sign(encode(setpoint(1)), b"k" * 32))
    elif tamper == "alg-none":
        env["protected"] = b64url(b'{"alg":"none"}')
    elif tamper == "alg-eddsa":
        env["protected"] = b64url(b'{"alg":"EdDSA"}')
    elif tamper == "extra-member":
        env["header"] = {}
    elif tamper == "crit":
        env = json.loads(sign(encode(setpoint(1)), HMAC_KEY))
        env["protected"] = b64url(b'{"alg":"HS256","crit":["exp"]}')
    elif tamper == "not-base64":
        env["payload"] = "###"
    elif tamper == "header-not-object":
        env["protected"] = b64url(b"[1]")
    acks = m.submit(json.dumps(env).encode(), NOW)
    assert [a.reason for a in acks] == [Reason.SIGNATURE_INVALID], acks[0].detail
    assert m.limits_at(NOW).source == "fallback"


def test_key_id_must_match_when_configured() -> None:
    m = hmac_manager(kid="op-2026")
    assert m.submit(sign(encode(setpoint(1)), HMAC_KEY, kid="op-2025"), NOW)[0].reason is Reason.SIGNATURE_INVALID
    assert m.submit(sign(encode(setpoint(1)), HMAC_KEY, kid="op-2026"), NOW)[0].accepted


def test_ed25519_signed_setpoint_and_wrong_key() -> None:
    operator = Ed25519PrivateKey.generate()
    m = DispatchManager.from_config(DEMO, JwsVerifier(operator.public_key()))
    assert m.submit(sign(encode(setpoint(1)), operator), NOW)[0].accepted
    impostor = Ed25519PrivateKey.generate()
    assert m.submit(sign(encode(setpoint(2)), impostor), NOW)[0].reason is Reason.SIGNATURE_INVALID
    assert m.submit(sign(encode(setpoint(3)), HMAC_KEY), NOW)[0].reason is Reason.SIGNATURE_INVALID  # alg confusion


def test_replay_of_a_valid_signed_message_is_refused() -> None:
    """A signature proves who wrote it, not when: seq and issued_at stop a captured message."""
    m = hmac_manager()
    captured = sign(encode(setpoint(5, valid_until=NOW + 3600)), HMAC_KEY)
    assert m.submit(captured, NOW)[0].accepted
    assert m.submit(captured, NOW + 5)[0].reason is Reason.SEQ_REPLAYED
    fresh = hmac_manager()  # e.g. a controller that lost its state: the issued_at window still holds
    assert fresh.submit(captured, NOW + 31)[0].reason is Reason.ISSUED_AT_OUT_OF_WINDOW


def test_verifier_from_config_reads_key_files(tmp_path: Path) -> None:
    (tmp_path / "hmac.key").write_bytes(HMAC_KEY + b"\n")
    v = verifier_from_config(SigningConfig(mode="hmac-sha256", key_file="hmac.key"), "st-1", tmp_path)
    assert v(sign(b'{"a":1}', HMAC_KEY, station="st-1")) == b'{"a":1}'
    operator = Ed25519PrivateKey.generate()
    pem = operator.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "op.pub").write_bytes(pem)
    v = verifier_from_config(SigningConfig(mode="ed25519", key_file=str(tmp_path / "op.pub"), key_id="k1"), "st-1")
    assert v(sign(b"[]", operator, kid="k1", station="st-1")) == b"[]"
    (tmp_path / "short.key").write_bytes(b"tooshort")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        verifier_from_config(SigningConfig(mode="hmac-sha256", key_file="short.key"), "st-1", tmp_path)


def test_a_message_signed_for_another_station_is_refused() -> None:
    """One operator key signs the whole fleet: a setpoint captured on station A's topic and published
    to station B's must not verify at B, although its signature is genuine."""
    at_b = DispatchManager.from_config(DEMO, JwsVerifier(HMAC_KEY, station="st-b"))
    for_a = sign(encode(setpoint(7)), HMAC_KEY, station="st-a")
    ack = at_b.submit(for_a, NOW)[0]
    assert ack.reason is Reason.SIGNATURE_INVALID and "signed for station 'st-a', this is 'st-b'" in ack.detail
    unbound = sign(encode(setpoint(8)), HMAC_KEY)  # no station in the signed header
    ack = at_b.submit(unbound, NOW)[0]
    assert ack.reason is Reason.SIGNATURE_INVALID and ack.detail == "signed header names no station"
    assert at_b.limits_at(NOW).source == "fallback"  # nothing was accepted
    assert at_b.submit(sign(encode(setpoint(9)), HMAC_KEY, station="st-b"), NOW)[0].accepted
    operator = Ed25519PrivateKey.generate()
    ed_at_b = DispatchManager.from_config(DEMO, JwsVerifier(operator.public_key(), station="st-b"))
    assert ed_at_b.submit(sign(encode(setpoint(1)), operator, station="st-a"), NOW)[0].reason is Reason.SIGNATURE_INVALID
    assert ed_at_b.submit(sign(encode(setpoint(2)), operator, station="st-b"), NOW)[0].accepted
