"""Shamir's secret sharing over GF(2^8), byte by byte (as Vault's ``shamir`` package).

Each byte of the secret is the constant term of its own random polynomial of
degree ``threshold - 1``; share *i* holds the polynomial values at a distinct
non-zero x coordinate.  Any ``threshold`` shares give the secret back by
Lagrange interpolation at x = 0; fewer give no information about it.

Field: GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11B).
Multiplication is a fixed 8-round shift-and-add with masks instead of
branches or tables indexed by secret bytes, so its timing does not depend
on the values multiplied.  Pure functions; randomness from :mod:`secrets`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

MAX_SHARES = 255


def _mul(a: int, b: int) -> int:
    product = 0
    for _ in range(8):
        product ^= a & -(b & 1)
        carry = -((a >> 7) & 1)
        a = ((a << 1) ^ (0x11B & carry)) & 0xFF
        b >>= 1
    return product


def _inverse(a: int) -> int:
    """a^254 = a^-1 in GF(2^8) (a != 0)."""
    result, power, exp = 1, a, 254
    while exp:
        if exp & 1:
            result = _mul(result, power)
        power = _mul(power, power)
        exp >>= 1
    return result


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    """Horner's rule; ``coefficients[0]`` is the constant term."""
    y = 0
    for c in reversed(coefficients):
        y = _mul(y, x) ^ c
    return y


def split(secret: bytes, shares: int, threshold: int) -> list[tuple[int, bytes]]:
    """``shares`` pairs ``(x, y-bytes)`` of which any ``threshold`` recover ``secret``."""
    if not secret:
        raise ValueError("cannot split an empty secret")
    if not 1 <= threshold <= shares <= MAX_SHARES:
        raise ValueError(f"need 1 <= threshold ({threshold}) <= shares ({shares}) <= 255")
    xs = list(range(1, MAX_SHARES + 1))
    # distinct random x coordinates, so a share's position says nothing about its peers
    for i in range(len(xs) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        xs[i], xs[j] = xs[j], xs[i]
    xs = xs[:shares]
    ys = [bytearray(len(secret)) for _ in xs]
    for pos, byte in enumerate(secret):
        coefficients = [byte, *secrets.token_bytes(threshold - 1)]
        for x, y in zip(xs, ys, strict=True):
            y[pos] = _evaluate(coefficients, x)
    return [(x, bytes(y)) for x, y in zip(xs, ys, strict=True)]


def combine(parts: Sequence[tuple[int, bytes]]) -> bytes:
    """The secret from ``threshold`` or more shares (a wrong or foreign share gives garbage:
    check the result, e.g. by opening something sealed under it)."""
    if not parts:
        raise ValueError("no shares given")
    xs = [x for x, _ in parts]
    if len(set(xs)) != len(xs) or not all(1 <= x <= MAX_SHARES for x in xs):
        raise ValueError("shares must have distinct x coordinates from 1 to 255")
    length = len(parts[0][1])
    if any(len(y) != length for _, y in parts):
        raise ValueError("shares have different lengths")
    # Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i); subtraction is XOR
    basis = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = _mul(num, xj)
                den = _mul(den, xj ^ xi)
        basis.append(_mul(num, _inverse(den)))
    out = bytearray(length)
    for pos in range(length):
        acc = 0
        for li, (_, y) in zip(basis, parts, strict=True):
            acc ^= _mul(li, y[pos])
        out[pos] = acc
    return bytes(out)
