"""Retry decisions: exponential ceilings with full jitter, a cap, a floor from the remote, dead letters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from autorunner.retry import DeadLetter, Retry, RetryPolicy, after_failure

POLICY = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=10.0)


def test_ceilings_double_each_attempt_up_to_the_cap() -> None:
    assert [POLICY.ceiling(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_full_jitter_scales_the_ceiling_by_the_random_draw() -> None:
    assert after_failure(POLICY, attempt=3, error="e", permanent=False, rand=lambda: 0.5) == Retry(
        delay=2.0
    )
    assert after_failure(POLICY, attempt=3, error="e", permanent=False, rand=lambda: 0.0) == Retry(
        delay=0.0
    )


def test_last_attempt_goes_to_the_dead_letters_with_the_error() -> None:
    ruling = after_failure(POLICY, attempt=5, error="HTTP 503", permanent=False)
    assert ruling == DeadLetter(reason="gave up after 5 attempts: HTTP 503")


def test_permanent_errors_are_not_retried() -> None:
    assert after_failure(POLICY, attempt=1, error="HTTP 400", permanent=True) == DeadLetter(
        reason="permanent: HTTP 400"
    )


def test_remote_retry_after_is_a_floor() -> None:
    ruling = after_failure(
        POLICY, attempt=1, error="429", permanent=False, retry_after=7.0, rand=lambda: 0.1
    )
    assert ruling == Retry(delay=7.0)


@given(attempt=st.integers(1, 4), draw=st.floats(0, 1, exclude_max=True))
def test_every_delay_lies_within_zero_and_the_ceiling(attempt: int, draw: float) -> None:
    ruling = after_failure(POLICY, attempt=attempt, error="e", permanent=False, rand=lambda: draw)
    assert isinstance(ruling, Retry)
    assert 0 <= ruling.delay <= POLICY.ceiling(attempt)
