"""argparse value types with limits: a bad number is a usage error, never a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from cloister.policy._model import Invalid, check_name, check_session_name


def bounded_int(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} {value} is not in {low}..{high}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def seconds(text: str) -> float:
    """A positive, finite number of seconds (at most a day)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= 86400):
        raise argparse.ArgumentTypeError(f"{text} seconds is not in (0, 86400]")
    return value


port = bounded_int(1, 65535, "port")


def session_name(text: str) -> str:
    """A valid session name (``ns/app`` allowed): nothing that could change a CAS URL."""
    try:
        return check_session_name(text)
    except Invalid as err:
        raise argparse.ArgumentTypeError(err.message) from None


def secret_name(text: str) -> str:
    try:
        return check_name(text, "secret")
    except Invalid as err:
        raise argparse.ArgumentTypeError(err.message) from None
