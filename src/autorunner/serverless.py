"""AWS Lambda entry points: the serverless pattern, where an HTTP function admits webhooks into
PostgreSQL and SQS and an SQS-triggered function runs them (``deploy/aws/template.yaml``).

* ``ingress`` takes an HTTP API (payload 2.0) or Function URL request and hands it, as an ASGI
  request, to the very app ``autorunner ingress`` serves: the webhook route's signature check
  over the raw bytes (a base64-encoded body is decoded first), limits, admission and answers
  (``202``/``200``/``4xx``/``503``) are that route's own, and so are ``/healthz`` and ``/readyz``.
* ``worker`` takes an SQS batch and runs each record through the worker's own path (lease in the
  store, pipeline, ledger, settle), heartbeats included. A record whose job is to be delivered
  again (a retry at its delay, a held event, the store away) is reported in
  ``batchItemFailures``, so one bad event does not redeliver the batch; the others are deleted
  (by us, as ``claim`` would settle them, and by Lambda). The ledger keeps each effect once
  across redeliveries. A failed record comes back in ``AGAIN_IN`` seconds; while the kill
  switch is on nothing runs and records come back every ``PAUSED_AGAIN_IN`` seconds.
* ``sweeper`` (on a schedule) enqueues stored events no message is bringing to a worker: the
  serverless stand-in for the sweeper a long-running worker runs.

An execution environment handles one invocation at a time and is reused: the first invocation
reads the settings (the environment, as the CLI does), opens PostgreSQL and SQS and builds the
runtime on an event loop kept for the environment's life; later ones reuse them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from autorunner import logs
from autorunner.app import Role, Runtime, build_runtime
from autorunner.backends import open_backends
from autorunner.config import load_settings
from autorunner.errors import ConfigError, Unavailable
from autorunner.queue.base import Job
from autorunner.queue.sqs import SqsQueue
from autorunner.sweeper import sweep_once
from autorunner.tallies import Tallies

Event = dict[str, Any]
T = TypeVar("T")
AGAIN = frozenset({"retry", "held", "failed"})
"""Outcomes whose record SQS is to deliver again."""
AGAIN_IN = 5.0
"""Seconds before a record that failed (the store away, a bug) is delivered again."""
PAUSED_AGAIN_IN = 60.0
"""Seconds between deliveries of a record while the kill switch is on."""


@dataclass
class _Environment:
    loop: asyncio.AbstractEventLoop
    runtime: Runtime
    tallies: Tallies

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run one invocation's work, then flush the tallies when one is due (an environment
        may be frozen for good after any invocation: at most ``FLUSH_EVERY`` is lost)."""

        async def invocation() -> T:
            try:
                return await work
            finally:
                await self.tallies.flush_due()

        try:
            return self.loop.run_until_complete(invocation())
        finally:
            logs.flush()  # the environment may be frozen before the loop runs again


_environments: dict[Role, _Environment] = {}


def _environment(role: Role) -> _Environment:
    """This execution environment's runtime for ``role``, built at the first invocation (and
    at the next one again if that failed: nothing half-built is kept)."""
    found = _environments.get(role)
    if found is not None:
        return found
    settings = load_settings()
    logs.configure(level=settings.log_level, fmt="json")
    if settings.runner_mode != "cloud":
        raise ConfigError("the Lambda handlers need RUNNER_MODE=cloud")
    loop = asyncio.new_event_loop()

    async def build() -> Runtime:
        backends = await open_backends(settings)
        try:
            return build_runtime(settings, backends, role=role)
        except BaseException:
            await backends.close()
            raise

    try:
        runtime = loop.run_until_complete(build())
        tallies = Tallies(runtime.backends.store, runtime.metrics, clock=runtime.clock)
        found = _Environment(loop=loop, runtime=runtime, tallies=tallies)
    except BaseException:
        loop.close()
        raise
    _environments[role] = found
    return found


def ingress(event: Event, context: object = None) -> Event:
    """The HTTP function: one webhook (or probe) request, answered as the route answers — a
    store or queue that cannot be reached at a cold start included (``503``, Auto retries)."""
    try:
        found = _environment("ingress")
    except Unavailable:
        return _answer(
            503,
            b'{"error":"store_unavailable","detail":"event not stored; retry later"}',
            {"content-type": "application/json", "retry-after": "5"},
        )
    return found.run(call_asgi(found.runtime.app, event))


def worker(event: Event, context: object = None) -> Event:
    """The SQS-triggered function: ``{"batchItemFailures": [...]}`` names the records to
    deliver again (the event source mapping needs ``ReportBatchItemFailures``)."""
    found = _environment("worker")
    return found.run(run_records(found.runtime, event.get("Records", [])))


def sweeper(event: Event, context: object = None) -> Event:
    """The scheduled function: ``{"requeued": N, "approvals_sent": M}`` — overdue events back
    on the queue (timed-out approvals answered), and new approval requests sent to their chats
    (answers come back through the HTTP function's ``/telegram/updates``)."""
    found = _environment("worker")
    runtime = found.runtime

    async def sweep() -> tuple[int, int]:
        count = await sweep_once(
            runtime.backends.store,
            runtime.backends.queue,
            after=runtime.settings.sweep_after,
            clock=runtime.clock,
        )
        sent = await runtime.desk.send_pending() if runtime.desk is not None else 0
        return count, sent

    count, sent = found.run(sweep())
    return {"requeued": count, "approvals_sent": sent}


async def run_records(runtime: Runtime, records: list[Event]) -> Event:
    """Run an SQS batch through the worker; the records to deliver again. A record that failed
    (the store away, a bug) comes back in ``AGAIN_IN`` seconds, not after the queue's long
    visibility timeout; while paused, records come back every ``PAUSED_AGAIN_IN`` seconds."""
    queue = runtime.backends.queue
    if not isinstance(queue, SqsQueue):
        raise ConfigError("the SQS-triggered worker needs QUEUE_URL to name an SQS queue")
    every = [{"itemIdentifier": str(record["messageId"])} for record in records]
    try:
        jobs = await queue.adopt(records)
        runnable = [job for job in jobs if job is not None]
        outcomes = await runtime.worker.run_batch(runnable, paused_delay=PAUSED_AGAIN_IN)
    except Unavailable:
        as_jobs = [
            Job(event_id=str(r["body"]), deliveries=1, receipt=str(r["receiptHandle"]))
            for r in records
        ]
        with contextlib.suppress(Unavailable):
            await queue.extend(as_jobs, lease=AGAIN_IN)
        return {"batchItemFailures": every}
    ended = dict(zip((job.receipt for job in runnable), outcomes, strict=True))
    failed = [job for job in runnable if ended[job.receipt] == "failed"]
    with contextlib.suppress(Unavailable):
        await queue.extend(failed, lease=AGAIN_IN)
    again = [
        failure
        for failure, job in zip(every, jobs, strict=True)
        if job is not None and ended[job.receipt] in AGAIN
    ]
    return {"batchItemFailures": again}


async def call_asgi(app: Any, event: Event) -> Event:
    """One HTTP API payload 2.0 / Function URL request through an ASGI app; its response in
    the shape Lambda returns to API Gateway."""
    http = event.get("requestContext", {}).get("http", {})
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return _answer(400, b'{"error":"invalid_body","detail":"body is not base64"}')
    else:
        raw = body.encode()
    path = str(event.get("rawPath") or http.get("path") or "/")
    stage = str(event.get("requestContext", {}).get("stage") or "$default")
    if stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1 :]  # an HTTP API's named stage prefixes the raw path
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": str(http.get("method", "GET")).upper(),
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": str(event.get("rawQueryString") or "").encode(),
        "root_path": "",
        "headers": [
            (str(name).lower().encode("latin-1", "replace"), str(value).encode())
            for name, value in (event.get("headers") or {}).items()
        ],
        "client": (str(http.get("sourceIp", "")), 0),
        "server": None,
    }
    sent: list[bytes] = []
    status = 500
    answered = False

    async def receive() -> dict[str, Any]:
        nonlocal answered
        if answered:
            return {"type": "http.disconnect"}
        answered = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers.update(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    headers: dict[str, str] = {}
    await app(scope, receive, send)
    return _answer(status, b"".join(sent), headers)


def _answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> Event:
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "statusCode": status,
        "headers": headers or {"content-type": "application/json"},
        "body": text,
        "isBase64Encoded": encoded,
    }
