"""The one exception tree of autorunner.

    AutorunnerError
    ├── ConfigError              settings or a file given by the operator are invalid
    ├── InvalidEvent             a body or frame is not an event we understand (-> 400, counted)
    ├── InvalidDecision          a decider's output failed its schema (-> a denied verdict)
    ├── SignatureError           a delivery is not authentic (-> 401); ``reason`` is a stable code
    ├── Unavailable              the store or the queue cannot take or give data now (-> 503, retry)
    │   ├── StoreUnavailable     the store (SQLite, whose file holds the local queue too; PostgreSQL)
    │   └── QueueUnavailable     a queue of its own (Redis)
    ├── OperationRefused         an operator's request cannot be carried out as asked
    ├── JobError                 raised inside a job; decides retry vs dead letter
    │   ├── TransientError       worth retrying later (timeouts, 5xx, rate limits)
    │   │   ├── DeliveryUnknown  the request may have reached the remote, no answer came
    │   │   └── Superseded       another attempt took the event over: act on nothing more
    │   └── PermanentError       will fail the same way again (4xx, invalid action)
    └── AutoError                Elfa Auto answered with an error (``status``, ``detail``)
        ├── AutoAuthError        401/403: the message names the credential to check (permanent)
        ├── AutoPaymentRequired  402: an x402 payment is needed (permanent)
        ├── AutoNotFound         404 (permanent)
        ├── AutoRejected         400/409/422: the request itself is wrong (permanent)
        └── AutoUnavailable      429/5xx/network after retries (transient)

Foreign errors (sqlite3, httpx2, …) are translated at the boundary with ``raise … from exc``.
"""

from __future__ import annotations


class AutorunnerError(Exception):
    """Base of every error autorunner raises on purpose."""


class ConfigError(AutorunnerError):
    """A setting or operator-supplied file is invalid; the message names the field."""


class InvalidEvent(AutorunnerError):
    """A payload that is not an event of any shape the Auto contract documents."""


class InvalidDecision(AutorunnerError):
    """A decider produced output that is not a valid ``Decision``; recorded as a denied verdict."""

    def __init__(self, message: str, *, trace: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.trace = trace or {}


class SignatureError(AutorunnerError):
    """A webhook delivery that failed verification.

    ``reason`` is a short stable code used as a metric label and in logs.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Unavailable(AutorunnerError):
    """The store or the queue could not complete an operation; callers answer 503 or retry."""


class StoreUnavailable(Unavailable):
    """The store could not complete an operation (in local mode the queue shares its file)."""


class QueueUnavailable(Unavailable):
    """A queue of its own (Redis) could not complete an operation; the store still may."""


class OperationRefused(AutorunnerError):
    """An operator asked for something that does not apply (no such event, an effect that is
    not unknown, a rerun of an event still running); the message says what is the case."""


class JobError(AutorunnerError):
    """An error raised while running a job."""


class TransientError(JobError):
    """A failure worth retrying; ``retry_after`` (seconds) is honoured when a remote gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryUnknown(TransientError):
    """An adapter's request left and may have reached the remote, but no answer came (a read
    timeout, a dropped connection): an at-most-once effect becomes ``unknown``, an at-least-once
    one is retried."""


class Superseded(TransientError):
    """This attempt no longer holds its event (its lease lapsed and another attempt took over,
    or the event was rerun): it must not perform anything more, nor touch the ledger."""


class PermanentError(JobError):
    """A failure that retrying cannot fix; the job goes to the dead letters."""


class AutoError(AutorunnerError):
    """Elfa Auto refused or failed a request; never carries a credential."""

    def __init__(
        self, message: str, *, status: int | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class AutoAuthError(AutoError, PermanentError):
    """401/403: wrong or missing credential, or Auto not enabled for the key."""


class AutoPaymentRequired(AutoError, PermanentError):
    """402: the call needs an x402 payment header."""


class AutoNotFound(AutoError, PermanentError):
    """404: no such query, execution or session."""


class AutoRejected(AutoError, PermanentError):
    """400/409/422: Auto rejected the request as it stands."""


class AutoUnavailable(AutoError, TransientError):
    """429, 5xx or a network failure that outlasted the client's retries."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        AutoError.__init__(self, message, status=status, detail=detail)
        self.retry_after = retry_after
