"""Shamir over GF(2^8) and the unseal shares: K recover, K-1 do not, every bad share named."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloister import errors
from cloister.cas import _shamir
from cloister.cas._seal import (
    SealConfig,
    ShamirUnsealer,
    decode_share,
    encode_share,
    key_check,
    new_seal_id,
    shamir_shares,
)


def test_field_inverses_and_known_product() -> None:
    assert all(_shamir._mul(a, _shamir._inverse(a)) == 1 for a in range(1, 256))
    assert _shamir._mul(0x57, 0x83) == 0xC1  # FIPS-197 section 4.2


@settings(max_examples=20, deadline=None)
@given(secret=st.binary(min_size=1, max_size=40), n=st.integers(1, 8), data=st.data())
def test_any_k_of_n_recover_the_secret(secret: bytes, n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n))
    shares = _shamir.split(secret, n, k)
    assert len({x for x, _ in shares}) == n
    for subset in itertools.islice(itertools.combinations(shares, k), 20):
        assert _shamir.combine(list(subset)) == secret


def test_fewer_than_k_shares_say_nothing() -> None:
    secret = os.urandom(32)
    shares = _shamir.split(secret, 5, 3)
    for subset in itertools.combinations(shares, 2):
        assert _shamir.combine(list(subset)) != secret
    # with K-1 shares every value of a byte stays possible: the first byte that two
    # shares give (interpolating a line through them) is spread over all 256 values
    seen = {_shamir.combine(_shamir.split(b"\x00", 3, 3)[:2])[0] for _ in range(3000)}
    assert len(seen) > 240


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        _shamir.split(b"k", 3, 4)
    with pytest.raises(ValueError, match="distinct"):
        _shamir.combine([(1, b"a"), (1, b"b")])
    with pytest.raises(errors.ConfigError, match="do not fit"):
        shamir_shares(new_seal_id(), os.urandom(32), 2, 3)


def _config(master: bytes, threshold: int = 3) -> SealConfig:
    seal_id = new_seal_id()
    return SealConfig("shamir", seal_id, key_check(master, seal_id),
                      {"shares": 5, "threshold": threshold})


def test_unsealer_k_shares_unseal_and_k_minus_1_do_not() -> None:
    master = os.urandom(32)
    config = _config(master)
    shares = shamir_shares(config.seal_id, master, 5, 3)
    unsealer = ShamirUnsealer(config)
    assert unsealer.add(shares[4]) is None and unsealer.add(shares[1]) is None
    assert unsealer.progress == 2
    assert unsealer.add(shares[2]) == master
    assert unsealer.progress == 0


def test_foreign_mistyped_repeated_and_mismatched_shares_are_named() -> None:
    master = os.urandom(32)
    config = _config(master)
    mine = shamir_shares(config.seal_id, master, 5, 3)
    other = _config(os.urandom(32))
    theirs = shamir_shares(other.seal_id, os.urandom(32), 5, 3)
    unsealer = ShamirUnsealer(config)
    with pytest.raises(errors.BadShare, match=f"another CAS \\(seal {other.seal_id}\\)"):
        unsealer.add(theirs[0])
    typo = mine[0][:-3] + ("A" if mine[0][-3] != "A" else "B") + mine[0][-2:]
    with pytest.raises(errors.BadShare, match="checksum"):
        unsealer.add(typo)
    with pytest.raises(errors.BadShare, match="not a cloister unseal share"):
        unsealer.add("hello")
    unsealer.add(mine[0])
    with pytest.raises(errors.BadShare, match="already given"):
        unsealer.add(mine[0])
    assert unsealer.progress == 1
    # a share of an earlier split of another key under the same seal id: combines wrong
    stale = shamir_shares(config.seal_id, os.urandom(32), 5, 3)
    unsealer.add(stale[1])
    with pytest.raises(errors.BadShare, match="do not combine to this CAS's master key"):
        unsealer.add(mine[2])
    assert unsealer.progress == 0


def test_share_encoding_round_trip_and_no_echo() -> None:
    seal_id = new_seal_id()
    y = os.urandom(32)
    text = encode_share(seal_id, 7, y)
    assert decode_share(text) == (seal_id, 7, y)
    try:
        decode_share(text[:-1] + ("x" if text[-1] != "x" else "y"))
    except errors.BadShare as exc:
        assert text[20:] not in str(exc) + " ".join(exc.details)
