"""Requests of concurrent tasks, sent together: ``Coalescer``.

Many jobs run at once in one worker, and at every step each sends one small request to the store
or the queue. ``Coalescer.submit`` puts a request aside and, at the end of the event loop's pass
in which it came (``call_soon``), hands every request put aside so far to one ``send`` — so the
requests tasks issue in the same pass travel in one round trip, while a lone request waits for no
one. At most ``parallel`` sends are in flight; requests arriving meanwhile wait for the next,
which makes the batches grow with the load (group commit), up to ``limit`` requests each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class _Waiting(Generic[Request, Result]):
    request: Request
    future: asyncio.Future[Result]


class Coalescer(Generic[Request, Result]):
    """Sends requests in batches through ``send``, which returns one outcome per request, in
    order: its result, or the exception its caller gets. An exception ``send`` raises goes to
    every caller of the batch."""

    def __init__(
        self,
        send: Callable[[list[Request]], Awaitable[list[Result | BaseException]]],
        *,
        limit: int = 128,
        parallel: int = 3,
    ) -> None:
        self._send = send
        self._limit = limit
        self._parallel = parallel
        self._waiting: list[_Waiting[Request, Result]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def submit(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        waiting = _Waiting(request, future)
        self._waiting.append(waiting)
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._waiting and not self._scheduled and len(self._in_flight) < self._parallel:
            self._scheduled = True
            loop.call_soon(self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        batch = [each for each in self._waiting[: self._limit] if not each.future.cancelled()]
        del self._waiting[: self._limit]
        if batch:
            task = loop.create_task(self._run(batch))
            self._in_flight.add(task)
            task.add_done_callback(lambda done: self._sent(done, loop))
        self._schedule(loop)

    def _sent(self, task: asyncio.Task[None], loop: asyncio.AbstractEventLoop) -> None:
        self._in_flight.discard(task)
        self._schedule(loop)

    async def _run(self, batch: list[_Waiting[Request, Result]]) -> None:
        try:
            outcomes = await self._send([each.request for each in batch])
        except BaseException as exc:
            # The batch failed as a whole; or this task was cancelled (the loop is closing),
            # and its callers see that cancellation.
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        if len(outcomes) != len(batch):  # a bug in ``send``: no caller may wait forever
            _fail(batch, RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} requests"))
            return
        for each, outcome in zip(batch, outcomes, strict=True):
            if each.future.done():
                continue
            if isinstance(outcome, BaseException):
                each.future.set_exception(outcome)
            else:
                each.future.set_result(outcome)


def _fail(batch: list[_Waiting[Request, Result]], exc: BaseException) -> None:
    for each in batch:
        if not each.future.done():
            each.future.set_exception(exc)
