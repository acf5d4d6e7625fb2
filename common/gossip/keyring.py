"""Gossip encryption: an AES-GCM keyring (Consul's ``-encrypt`` / ``lictor keyring``).

Envelope of every gossip packet and stream frame::

    plaintext:  0x01 | body                                   (only without a keyring)
    encrypted:  0x81 | nonce (12 bytes) | AES-GCM(body) + tag (16 bytes)
                AAD = the version byte + b"lictor-gossip"

Keys are 16, 24 or 32 random bytes (AES-128/192/256), written in base64 as Consul's are.
The *primary* key encrypts; every installed key is tried to decrypt, so a new key is rolled out
in three cluster-wide steps: ``install`` everywhere, ``use`` everywhere, ``remove`` the old one.
The primary key cannot be removed.

Replays: each authenticated packet's nonce is remembered for ``window`` seconds (bounded
count); an exact duplicate within the window is dropped (``ReplayFilter``). An older replay is
harmless to SWIM: state messages carry incarnations (stale ones are ignored), acks carry
sequence numbers that are no longer awaited, and a replayed ping costs one ack.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lictor.common.errors import LictorError, RemoteProtocolError

__all__ = [
    "ENCRYPTED_VERSION",
    "PLAIN_VERSION",
    "DecryptError",
    "KeyringError",
    "Keyring",
    "ReplayFilter",
    "decode_key",
    "encode_key",
    "generate_key",
]

PLAIN_VERSION = 0x01
ENCRYPTED_VERSION = 0x81
NONCE_SIZE = 12
TAG_SIZE = 16
_AAD_LABEL = b"lictor-gossip"
KEY_SIZES = (16, 24, 32)


class KeyringError(LictorError):
    """A keyring operation was refused (bad key, removing the primary, unknown key)."""


class DecryptError(RemoteProtocolError):
    """A packet could not be opened: ``reason`` is truncated, version, or decrypt."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def generate_key(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A new 32-byte key in base64 (``lictor keygen``)."""
    return encode_key(random_bytes(32))


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str | bytes) -> bytes:
    """Parse a base64 key; KeyringError unless it decodes to 16, 24 or 32 bytes."""
    if isinstance(text, bytes):
        raw = text
    else:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyringError(f"key is not valid base64: {exc}") from None
    if len(raw) not in KEY_SIZES:
        raise KeyringError(f"key must be 16, 24 or 32 bytes, got {len(raw)}")
    return raw


class Keyring:
    """Installed keys, one of them primary. Keys may be given as bytes or base64 strings."""

    def __init__(self, keys: Iterable[str | bytes] = (), *, primary: str | bytes | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._keys: list[bytes] = []
        self._ciphers: dict[bytes, AESGCM] = {}
        self._random = random_bytes
        for k in keys:
            self.install(k)
        if primary is not None:
            self.install(primary)
            self.use(primary)
        if not self._keys:
            raise KeyringError("a keyring needs at least one key")

    @property
    def primary(self) -> bytes:
        return self._keys[0]

    def list(self) -> list[str]:
        """Installed keys in base64, the primary first."""
        return [encode_key(k) for k in self._keys]

    def install(self, key: str | bytes) -> None:
        raw = decode_key(key)
        if raw not in self._ciphers:
            self._keys.append(raw)
            self._ciphers[raw] = AESGCM(raw)

    def use(self, key: str | bytes) -> None:
        """Make an installed key the primary."""
        raw = decode_key(key)
        if raw not in self._ciphers:
            raise KeyringError("key is not installed")
        self._keys.remove(raw)
        self._keys.insert(0, raw)

    def remove(self, key: str | bytes) -> None:
        raw = decode_key(key)
        if raw not in self._ciphers:
            raise KeyringError("key is not installed")
        if raw == self._keys[0]:
            raise KeyringError("removing the primary key is not allowed")
        self._keys.remove(raw)
        del self._ciphers[raw]

    def encrypt(self, body: bytes) -> bytes:
        nonce = self._random(NONCE_SIZE)
        header = bytes((ENCRYPTED_VERSION,))
        ct = self._ciphers[self._keys[0]].encrypt(nonce, body, header + _AAD_LABEL)
        return header + nonce + ct

    def decrypt(self, frame: bytes) -> tuple[bytes, bytes]:
        """(body, nonce) of an encrypted frame; DecryptError if no key opens it."""
        if frame and frame[0] != ENCRYPTED_VERSION:
            raise DecryptError("version", f"unknown envelope version {frame[0]:#x}")
        if len(frame) < 1 + NONCE_SIZE + TAG_SIZE:
            raise DecryptError("truncated", f"frame of {len(frame)} bytes is too short")
        nonce = bytes(frame[1:1 + NONCE_SIZE])
        ct = bytes(frame[1 + NONCE_SIZE:])
        aad = bytes((ENCRYPTED_VERSION,)) + _AAD_LABEL
        for k in self._keys:
            try:
                return self._ciphers[k].decrypt(nonce, ct, aad), nonce
            except InvalidTag:
                continue
        raise DecryptError("decrypt", "no installed key decrypts the frame")


class ReplayFilter:
    """Remembers nonces of authenticated frames for ``window`` seconds (at most ``max_entries``)."""

    def __init__(self, *, window: float = 120.0, max_entries: int = 200_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, nonce: bytes, now: float) -> bool:
        """True if ``nonce`` was seen within the window (a replay); else remember it."""
        seen = self._seen
        while seen:
            oldest, t = next(iter(seen.items()))
            if t + self.window > now and len(seen) < self.max_entries:
                break
            seen.popitem(last=False)
        if nonce in seen:
            return True
        seen[nonce] = now
        return False
