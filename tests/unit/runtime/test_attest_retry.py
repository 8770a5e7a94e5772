"""The retry budget of ``cloister run``: the whole budget is used, and the message says so."""

from __future__ import annotations

import pytest

from cloister import errors
from cloister.runtime._attest import _retrying


class FakeClock:
    """Time that moves only when slept (plus a fixed cost per attempt)."""

    def __init__(self, attempt_cost: float = 0.0) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.attempts = 0
        self.attempt_cost = attempt_cost

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def unreachable(self) -> None:
        self.attempts += 1
        self.now += self.attempt_cost
        raise errors.Unreachable("the CAS at cas:8081 refused the connection")


@pytest.mark.parametrize("attempt_cost", [0.0, 0.05])
def test_a_budget_of_30_seconds_waits_30_seconds_and_says_so(attempt_cost: float) -> None:
    fake = FakeClock(attempt_cost)
    with pytest.raises(errors.Unreachable) as info:
        _retrying("CAS", fake.unreachable, 30, clock=fake.clock, sleep=fake.sleep)
    waited = fake.now - 1000.0
    assert 30 <= waited < 30 + 2 * attempt_cost + 1e-9, waited  # not 26 s, as it once was
    assert max(fake.slept) <= 5.0  # backoff capped
    assert "gave up after 30s of retries, CLOISTER_RETRY_SECONDS=30" in info.value.message
    assert fake.attempts >= 8


def test_a_refusal_is_not_retried() -> None:
    fake = FakeClock()

    def refused() -> None:
        fake.attempts += 1
        raise errors.AttestationError("measurement not allowed")

    with pytest.raises(errors.AttestationError):
        _retrying("CAS", refused, 30, clock=fake.clock, sleep=fake.sleep)
    assert fake.attempts == 1 and fake.slept == []


def test_an_overloaded_cas_is_retried_until_it_answers() -> None:
    fake = FakeClock()
    answers = iter([errors.Overloaded("busy"), errors.Overloaded("busy"), None])

    def busy_then_fine() -> str:
        err = next(answers)
        if err is not None:
            raise err
        return "config"

    assert _retrying("CAS", busy_then_fine, 30, clock=fake.clock, sleep=fake.sleep) == "config"
    assert fake.slept == [0.2, 0.4]


def test_nested_retries_share_one_budget_and_say_it_once() -> None:
    """The attempt is retried around its steps: a spent budget is not spent again."""
    fake = FakeClock(attempt_cost=0.05)
    deadline = fake.clock() + 10

    def attempt() -> None:
        fake.sleep(4)  # the nonce step took 4 s before the LAS step
        _retrying("LAS", fake.unreachable, 10, deadline=deadline, clock=fake.clock,
                  sleep=fake.sleep)

    with pytest.raises(errors.Unreachable) as info:
        _retrying("CAS", attempt, 10, deadline=deadline, clock=fake.clock, sleep=fake.sleep)
    waited = fake.now - 1000.0
    assert 10 <= waited < 10.2, waited  # one budget: not 4 s plus a fresh 10 s
    assert info.value.message == (
        "the CAS at cas:8081 refused the connection (gave up after 10s of retries, "
        "CLOISTER_RETRY_SECONDS=10; is the LAS running?)")
