"""Retry decisions as values (pure): exponential backoff with full jitter, then dead letter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How a failing job is retried: ``base * 2**(attempt-1)`` capped, times a random factor."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_delay, self.base_delay * 2.0 ** max(0, attempt - 1))


@dataclass(frozen=True, kw_only=True, slots=True)
class Retry:
    """Run the job again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetter:
    """Stop retrying; ``reason`` is recorded with the dead letter."""

    reason: str


def after_failure(
    policy: RetryPolicy,
    *,
    attempt: int,
    error: str,
    permanent: bool,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> Retry | DeadLetter:
    """What to do after attempt number ``attempt`` failed with ``error``.

    Full jitter (a uniform delay in ``[0, ceiling]``) spreads retries of many jobs that failed
    together; a remote's ``retry_after`` is a floor, never shortened by jitter.
    """
    if permanent:
        return DeadLetter(reason=f"permanent: {error}")
    if attempt >= policy.max_attempts:
        return DeadLetter(reason=f"gave up after {attempt} attempts: {error}")
    delay = policy.ceiling(attempt) * rand()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return Retry(delay=delay)
