"""The Amazon SQS queue (cloud and serverless modes): ``QUEUE_URL`` is the queue's URL
(``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``) or ``sqs://NAME`` (looked up in
``AWS_REGION``). botocore reads credentials, and ``AWS_ENDPOINT_URL_SQS`` for another
endpoint, from the environment itself.

SQS carries the deliveries; the store's PostgreSQL keeps, per job, which delivery is current
(table ``sqs_jobs``), because SQS itself cannot say:

* **Once per event id.** SQS has no "already queued": ``enqueue`` registers the job first and
  sends only when it was not registered (or has gone unseen — not claimed since it was due — for
  ``RESEND_AFTER``: a send cut off between the two steps, or a message lost, is repaired by the
  sweeper's next enqueue then). A send that fails or takes past ``SEND_TIMEOUT`` is unregistered again, so the
  sweeper's next pass sends it.
* **Leases.** ``claim`` receives with the lease as the visibility timeout, extended by the
  running worker's heartbeat (``ChangeMessageVisibility``), and records each message's receipt
  handle as the job's current one — one statement per batch. A message whose job is not
  registered (a copy of a job already settled), or whose job is another message's (a resend
  that raced the original), is deleted, not handed out.
* **Settling by receipt.** ``ack``, ``retry`` and ``dead_letter`` act only when their receipt is
  still the current one: SQS honours an earlier delivery's receipt, and a worker whose lease
  lapsed must not settle the job a second worker now runs.
* **Dead letters are ours, not a redrive policy.** The worker decides when an event is dead
  (a non-retryable error is dead at its first attempt; the store counts attempts), and a redrive
  is an ``enqueue``; so a dead job is a ``sqs_jobs`` row in state ``dead`` (its message deleted).
  A native redrive policy on the queue, if one is set, is a backstop only: the store still holds
  such an event as unfinished and the sweeper enqueues it again.

Limits SQS sets and how we stay correct: a visibility timeout is at most 12 hours from the first
receive — the heartbeat renews the lease long before, and a job running that long is failed by
``JOB_TIMEOUT`` first; a delayed enqueue waits at most 15 minutes (``DelaySeconds``), enough for
the sweeper's and operators' enqueues, which are never delayed (retries are visibility
changes); a FIFO queue (``.fifo``) takes no per-message delay (a delayed enqueue is sent at
once) and gets one message group per event id and a deduplication id per send;
``stats`` counts are approximate, as SQS reports them. Failures to reach SQS, and throttling,
are ``QueueUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from autorunner.clock import Clock, system_clock
from autorunner.errors import ConfigError, QueueUnavailable, Unavailable
from autorunner.postgresdb import PostgresDatabase
from autorunner.queue.base import Job, QueueStats

T = TypeVar("T")
RESEND_AFTER = 120.0
"""Seconds a registered job may go unseen — not claimed since it was due — before the sweeper's
enqueue sends it again: the repair for a send cut off between registering and sending, or a
message lost. A copy claimed after its original is deleted unrun, so a resend during a long
backlog costs one extra message, never a second run."""
SEND_TIMEOUT = 2.0
"""Longest an enqueue waits for SQS (its retries included) before the store alone holds it."""
ENQUEUE_PAUSE = 1.0
"""Seconds ``enqueue`` fails fast after a failed send."""
MAX_VISIBILITY = 43_200
MAX_DELAY = 900
MAX_WAIT = 20
STALE = {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"}
"""What SQS answers to a receipt that is no longer valid: nothing to settle."""


def _seconds(value: float, ceiling: int) -> int:
    return min(ceiling, max(0, math.ceil(value)))


def locate(url: str) -> tuple[str | None, str | None, str | None]:
    """``(region, endpoint, queue_url)`` from ``QUEUE_URL``; ``queue_url`` is None for
    ``sqs://NAME`` (looked up by name)."""
    parts = urlsplit(url)
    if parts.scheme == "sqs":
        return None, None, None
    host = parts.hostname or ""
    if host.endswith(".amazonaws.com") and host.startswith("sqs."):
        return host.split(".")[1], None, url
    return None, f"{parts.scheme}://{parts.netloc}", url


class SqsQueue:
    """``Queue`` on SQS with its registry in ``db``; build it with ``await SqsQueue.open``."""

    def __init__(
        self,
        client: Any,
        url: str,
        db: PostgresDatabase,
        *,
        fifo: bool,
        clock: Clock = system_clock,
        resources: AsyncExitStack | None = None,
    ) -> None:
        self._client = client
        self.url = url
        self._db = db
        self._fifo = fifo
        self._clock = clock
        self._resources = resources or AsyncExitStack()
        self._enqueue_paused_until = 0.0
        self.name = url.rstrip("/").rsplit("/", 1)[-1]
        self._key = urlsplit(url).path.strip("/")  # ACCOUNT/NAME: this queue's rows in sqs_jobs

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        db: PostgresDatabase,
        region: str | None = None,
        clock: Clock = system_clock,
        connect_timeout: float = 5.0,
    ) -> SqsQueue:
        """Connect and look the queue up; ``QueueUnavailable`` if SQS cannot be reached,
        ``ConfigError`` if there is no such queue (queues are made by the deployment)."""
        found, endpoint, queue_url = locate(url)
        region = found or region
        if not region:
            raise ConfigError(f"QUEUE_URL={url}: set AWS_REGION (or use the queue's https URL)")
        config = AioConfig(
            connect_timeout=connect_timeout,
            read_timeout=MAX_WAIT + 10,  # a long poll answers within 20 s
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=20,
        )
        resources = AsyncExitStack()
        client = await resources.enter_async_context(
            get_session().create_client(
                "sqs", region_name=region, endpoint_url=endpoint, config=config
            )
        )
        try:
            if queue_url is None:
                name = urlsplit(url).netloc
                answer = await _call(client.get_queue_url(QueueName=name))
                queue_url = str(answer["QueueUrl"])
            attributes = await _call(
                client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["FifoQueue"])
            )
        except ClientError as exc:
            await resources.aclose()
            if "NonExistentQueue" in str(exc) or "QueueDoesNotExist" in str(exc):
                raise ConfigError(f"QUEUE_URL: no SQS queue at {url}") from exc
            raise QueueUnavailable(f"SQS refused: {exc}") from exc
        except BaseException:
            await resources.aclose()
            raise
        fifo = attributes.get("Attributes", {}).get("FifoQueue") == "true"
        return cls(client, queue_url, db, fifo=fifo, clock=clock, resources=resources)

    async def enqueue(self, event_id: str, *, delay: float = 0.0) -> None:
        """Register and send; for ``ENQUEUE_PAUSE`` seconds after a failed send, fail at once
        without trying (an ingress answering a webhook must not wait on an SQS that is away:
        the store holds the event and the sweeper will queue it)."""
        if time.monotonic() < self._enqueue_paused_until:
            raise QueueUnavailable("SQS unavailable (a recent send failed)")
        now = self._clock()
        async with self._db.tx() as conn:
            cur = await conn.execute(
                "INSERT INTO sqs_jobs (queue, event_id, state, sent_at)"
                " VALUES (%(q)s, %(e)s, 'queued', %(now)s)"
                " ON CONFLICT (queue, event_id) DO UPDATE SET state = 'queued',"
                " sent_at = excluded.sent_at, reason = NULL, message_id = NULL"
                " WHERE sqs_jobs.state = 'dead' OR sqs_jobs.sent_at < %(resend)s RETURNING 1",
                {"q": self._key, "e": event_id, "now": now, "resend": now - RESEND_AFTER},
            )
            if await cur.fetchone() is None:
                return  # waiting or running already
        message: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": event_id}
        if self._fifo:
            message["MessageGroupId"] = hashlib.sha256(event_id.encode()).hexdigest()
            send = f"{event_id}|{now!r}".encode()
            message["MessageDeduplicationId"] = hashlib.sha256(send).hexdigest()
        elif delay > 0:
            message["DelaySeconds"] = _seconds(delay, MAX_DELAY)
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self._request(self._client.send_message(**message))
        except BaseException as exc:
            self._enqueue_paused_until = time.monotonic() + ENQUEUE_PAUSE
            # Unregistered, so the sweeper's next pass sends it (a send that did arrive after
            # all is a stray copy, deleted at its claim).
            with contextlib.suppress(Unavailable):
                async with self._db.tx() as conn:
                    await conn.execute(
                        "DELETE FROM sqs_jobs WHERE queue = %s AND event_id = %s"
                        " AND sent_at = %s AND state = 'queued'",
                        (self._key, event_id, now),
                    )
            if isinstance(exc, TimeoutError):
                raise QueueUnavailable(f"SQS did not answer within {SEND_TIMEOUT}s") from exc
            raise

    async def claim(self, consumer: str, *, limit: int, lease: float, wait: float) -> list[Job]:
        messages: list[dict[str, Any]] = []
        poll = _seconds(wait, MAX_WAIT)
        while len(messages) < limit:
            batch = min(10, limit - len(messages))
            answer = await self._request(
                self._client.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=batch,
                    VisibilityTimeout=_seconds(lease, MAX_VISIBILITY),
                    WaitTimeSeconds=0 if messages else poll,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            )
            got = answer.get("Messages", [])
            messages += got
            if len(got) < batch:
                break
        return [job for job in await self._current(messages, lease=lease) if job is not None]

    async def adopt(self, records: list[dict[str, Any]]) -> list[Job | None]:
        """Jobs for messages SQS delivered to someone else — the records of an SQS-triggered
        Lambda invocation — made current as ``claim`` makes its own; None for a stray copy
        (deleted here: nothing to run)."""
        return await self._current(
            [
                {
                    "Body": record["body"],
                    "MessageId": record["messageId"],
                    "ReceiptHandle": record["receiptHandle"],
                    "Attributes": record.get("attributes", {}),
                }
                for record in records
            ],
            lease=0.0,  # Lambda's poller hands a message out again only once it is visible
        )

    async def _current(self, messages: list[dict[str, Any]], *, lease: float) -> list[Job | None]:
        """Each message's job, its receipt now the current one; None for a stray copy, and for
        the current message delivered a second time while another claim holds it (SQS delivers
        at least once: the copy is left alone, not deleted — deleting it deletes the message)."""
        if not messages:
            return []
        current = await self._make_current(messages, lease=lease)
        held = await self._message_ids(
            [str(m["Body"]) for m in messages if current.get(str(m["Body"])) != m["ReceiptHandle"]]
        )
        jobs: list[Job | None] = []
        for message in messages:
            receipt = str(message["ReceiptHandle"])
            if current.get(str(message["Body"])) != receipt:
                if held.get(str(message["Body"])) != str(message["MessageId"]):
                    await self._delete(receipt)  # a stray copy: its job is settled or elsewhere
                jobs.append(None)
                continue
            count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            jobs.append(Job(event_id=str(message["Body"]), deliveries=count, receipt=receipt))
        return jobs

    async def _make_current(
        self, messages: list[dict[str, Any]], *, lease: float
    ) -> dict[str, str]:
        """Record each message's receipt as its registered job's current one, in one statement.

        A job's message is the first one claimed since it was (re)sent; a copy with another
        message id is a stray — a resend raced the original, which is running or waiting — and
        is never handed out, so it cannot take the job from the worker that holds it. The same
        message again is handed out only once the claim holding it is ``lease`` old (it lapsed)
        or gave it back (``retry``)."""
        now = self._clock()
        async with self._db.tx() as conn:
            cur = await conn.execute(
                "UPDATE sqs_jobs SET receipt = m.receipt, message_id = m.message_id,"
                " sent_at = %s"
                " FROM unnest(%s::text[], %s::text[], %s::text[]) AS m(event_id, message_id, receipt)"
                " WHERE sqs_jobs.queue = %s AND sqs_jobs.event_id = m.event_id"
                " AND sqs_jobs.state = 'queued'"
                " AND (sqs_jobs.message_id IS NULL OR (sqs_jobs.message_id = m.message_id"
                "  AND (sqs_jobs.receipt IS NULL OR sqs_jobs.sent_at <= %s)))"
                " RETURNING sqs_jobs.event_id, sqs_jobs.receipt",
                (
                    now,
                    [str(m["Body"]) for m in messages],
                    [str(m["MessageId"]) for m in messages],
                    [str(m["ReceiptHandle"]) for m in messages],
                    self._key,
                    now - 0.9 * lease,  # SQS's clock may run a little ahead of ours
                ),
            )
            return {str(event_id): str(receipt) for event_id, receipt in await cur.fetchall()}

    async def _message_ids(self, event_ids: list[str]) -> dict[str, str]:
        """The current message id of each registered job among ``event_ids``."""
        if not event_ids:
            return {}
        async with self._db.tx() as conn:
            cur = await conn.execute(
                "SELECT event_id, message_id FROM sqs_jobs WHERE queue = %s"
                " AND event_id = ANY(%s) AND message_id IS NOT NULL",
                (self._key, event_ids),
            )
            return {str(e): str(m) for e, m in await cur.fetchall()}

    async def _holds(self, job: Job, change: str, *params: object) -> bool:
        """Apply ``change`` (SQL after ``UPDATE sqs_jobs SET`` or ``DELETE``) to ``job``'s row if
        ``job.receipt`` is its current delivery; whether it was."""
        head = "DELETE FROM sqs_jobs" if change == "DELETE" else f"UPDATE sqs_jobs SET {change}"
        async with self._db.tx() as conn:
            cur = await conn.execute(
                f"{head} WHERE queue = %s AND event_id = %s AND receipt = %s RETURNING 1".encode(),
                (*params, self._key, job.event_id, job.receipt),
            )
            return await cur.fetchone() is not None

    async def extend(self, jobs: list[Job], *, lease: float) -> None:
        seconds = _seconds(lease, MAX_VISIBILITY)
        for start in range(0, len(jobs), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": job.receipt, "VisibilityTimeout": seconds}
                for n, job in enumerate(jobs[start : start + 10])
            ]
            await self._by_receipt(
                self._client.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            )

    async def ack(self, job: Job) -> None:
        if await self._holds(job, "DELETE"):
            await self._delete(job.receipt)

    async def retry(self, job: Job, *, delay: float) -> None:
        # Due again after ``delay``: it is unseen only from then on.
        if await self._holds(job, "sent_at = %s, receipt = NULL", self._clock() + delay):
            await self._by_receipt(
                self._client.change_message_visibility(
                    QueueUrl=self.url,
                    ReceiptHandle=job.receipt,
                    VisibilityTimeout=_seconds(delay, MAX_VISIBILITY),
                )
            )

    async def dead_letter(self, job: Job, *, reason: str) -> None:
        if await self._holds(
            job, "state = 'dead', receipt = NULL, message_id = NULL, reason = %s", reason
        ):
            await self._delete(job.receipt)

    async def _delete(self, receipt: str) -> None:
        await self._by_receipt(
            self._client.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)
        )

    async def stats(self) -> QueueStats:
        answer = await self._request(
            self._client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )
        )
        counts = {key: int(value) for key, value in answer.get("Attributes", {}).items()}
        ready = counts.get("ApproximateNumberOfMessages", 0)
        async with self._db.tx() as conn:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'dead'),"
                " min(sent_at) FILTER (WHERE state = 'queued' AND receipt IS NULL)"
                " FROM sqs_jobs WHERE queue = %s",
                (self._key,),
            )
            row = await cur.fetchone()
        dead, oldest = (int(row[0]), row[1]) if row else (0, None)
        return QueueStats(
            depth=ready + counts.get("ApproximateNumberOfMessagesDelayed", 0),
            ready=ready,
            in_flight=counts.get("ApproximateNumberOfMessagesNotVisible", 0),
            dead=dead,
            oldest_ready_age=self._clock() - float(oldest) if ready and oldest else None,
        )

    async def _request(self, call: Awaitable[T]) -> T:
        try:
            return await _call(call)
        except ClientError as exc:
            raise QueueUnavailable(f"SQS refused: {_code(exc) or exc}") from exc

    async def _by_receipt(self, call: Awaitable[object]) -> None:
        """A change by receipt handle; one SQS no longer honours changes nothing."""
        try:
            await _call(call)
        except ClientError as exc:
            if _code(exc) not in STALE:
                raise QueueUnavailable(f"SQS refused: {_code(exc) or exc}") from exc

    async def drop(self) -> None:
        """Forget this queue's registry rows (tests)."""
        async with self._db.tx() as conn:
            await conn.execute("DELETE FROM sqs_jobs WHERE queue = %s", (self._key,))

    async def close(self) -> None:
        await self._resources.aclose()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


async def _call(call: Awaitable[T]) -> T:
    try:
        return await call
    except (BotoCoreError, OSError, TimeoutError) as exc:
        raise QueueUnavailable(f"SQS unavailable: {exc}") from exc
