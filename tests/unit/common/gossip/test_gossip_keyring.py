"""The AES-GCM keyring and the replay filter."""

from __future__ import annotations

import base64

import pytest

from lictor.common.gossip.keyring import (
    DecryptError,
    Keyring,
    KeyringError,
    ReplayFilter,
    decode_key,
    generate_key,
)


def test_generate_key_is_32_bytes_base64() -> None:
    assert len(base64.b64decode(generate_key())) == 32
    assert generate_key() != generate_key()


@pytest.mark.parametrize("size", [16, 24, 32])
def test_all_aes_key_sizes_encrypt_and_decrypt(size: int) -> None:
    ring = Keyring([base64.b64encode(bytes(range(size))).decode()])
    frame = ring.encrypt(b"hello")
    assert frame[0] == 0x81 and len(frame) == 1 + 12 + 5 + 16
    assert ring.decrypt(frame)[0] == b"hello"


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"x" * 20).decode(), ""])
def test_bad_keys_are_refused(bad: str) -> None:
    with pytest.raises(KeyringError):
        decode_key(bad)


def test_install_use_remove_list() -> None:
    k1, k2 = generate_key(), generate_key()
    ring = Keyring([k1])
    old = ring.encrypt(b"old")
    ring.install(k2)
    assert ring.list() == [k1, k2]
    ring.use(k2)
    assert ring.list() == [k2, k1]
    new = ring.encrypt(b"new")
    assert ring.decrypt(old)[0] == b"old"
    with pytest.raises(KeyringError):
        ring.remove(k2)  # the primary
    ring.remove(k1)
    assert ring.list() == [k2]
    assert ring.decrypt(new)[0] == b"new"
    with pytest.raises(DecryptError) as e:
        ring.decrypt(old)
    assert e.value.reason == "decrypt"
    with pytest.raises(KeyringError):
        ring.use(k1)
    with pytest.raises(KeyringError):
        Keyring([])


def test_tampered_truncated_and_foreign_frames_do_not_decrypt() -> None:
    ring = Keyring([generate_key()])
    frame = ring.encrypt(b"payload")
    tampered = frame[:-1] + bytes([frame[-1] ^ 1])
    for bad, reason in [(tampered, "decrypt"), (frame[:20], "truncated"), (b"", "truncated"),
                        (b"\x01" + frame[1:], "version"),
                        (Keyring([generate_key()]).encrypt(b"payload"), "decrypt")]:
        with pytest.raises(DecryptError) as e:
            ring.decrypt(bad)
        assert e.value.reason == reason


def test_replay_filter_drops_duplicates_within_the_window_only() -> None:
    f = ReplayFilter(window=10.0, max_entries=3)
    assert not f.seen(b"a", 0.0)
    assert f.seen(b"a", 5.0)
    assert not f.seen(b"a", 11.0)  # outside the window: forgotten (SWIM ignores old news)
    for n in (b"b", b"c", b"d"):
        f.seen(n, 12.0)
    assert len(f) <= 3
