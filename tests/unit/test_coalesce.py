"""``Coalescer``: requests issued in one pass of the loop go in one send, each caller gets its own
outcome, and batches are bounded in size and in number at once."""

from __future__ import annotations

import asyncio

import pytest

from autorunner.coalesce import Coalescer


class Sender:
    """Records each batch; answers ``request * 10``, or the exception a request names."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.sending = asyncio.Event()

    async def send(self, batch: list[int]) -> list[int | BaseException]:
        self.batches.append(batch)
        self.sending.set()
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"bad {n}") if n < 0 else n * 10 for n in batch]


async def test_requests_issued_in_one_pass_travel_in_one_send_and_each_gets_its_result() -> None:
    sender = Sender()
    coalescer: Coalescer[int, int] = Coalescer(sender.send)
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert sender.batches == [[0, 1, 2, 3, 4]]


async def test_a_lone_request_is_sent_without_waiting_for_company() -> None:
    sender = Sender()
    coalescer: Coalescer[int, int] = Coalescer(sender.send)
    assert await coalescer.submit(7) == 70
    assert await coalescer.submit(8) == 80
    assert sender.batches == [[7], [8]]


async def test_a_failed_request_fails_only_its_own_caller() -> None:
    sender = Sender()
    coalescer: Coalescer[int, int] = Coalescer(sender.send)
    results = await asyncio.gather(
        *(coalescer.submit(n) for n in (1, -2, 3)), return_exceptions=True
    )
    assert [results[0], results[2]] == [10, 30]
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "bad -2"
    assert sender.batches == [[1, -2, 3]]


async def test_a_send_that_raises_fails_every_caller_of_its_batch() -> None:
    async def broken(batch: list[int]) -> list[int | BaseException]:
        raise ConnectionError("gone")

    coalescer: Coalescer[int, int] = Coalescer(broken)
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_batches_hold_at_most_limit_requests() -> None:
    sender = Sender()
    coalescer: Coalescer[int, int] = Coalescer(sender.send, limit=2, parallel=5)
    assert await asyncio.gather(*(coalescer.submit(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert sender.batches == [[0, 1], [2, 3], [4]]


async def test_requests_arriving_while_sends_are_at_the_bound_wait_and_go_together() -> None:
    sender = Sender()
    sender.gate = asyncio.Event()
    coalescer: Coalescer[int, int] = Coalescer(sender.send, parallel=1)
    first = asyncio.ensure_future(coalescer.submit(1))
    await sender.sending.wait()
    later = [asyncio.ensure_future(coalescer.submit(n)) for n in (2, 3, 4)]
    for _ in range(5):  # several passes: nothing more is sent while the first send is out
        await asyncio.sleep(0)
    assert sender.batches == [[1]]
    sender.gate.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40]
    assert sender.batches == [[1], [2, 3, 4]]


async def test_a_request_whose_caller_was_cancelled_before_sending_is_not_sent() -> None:
    sender = Sender()
    coalescer: Coalescer[int, int] = Coalescer(sender.send)
    kept = asyncio.ensure_future(coalescer.submit(1))
    dropped = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0)  # both are waiting for the end of the pass
    dropped.cancel()
    assert await kept == 10
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert sender.batches == [[1]]


async def test_a_send_answering_the_wrong_number_of_outcomes_fails_every_caller() -> None:
    async def short(batch: list[int]) -> list[int | BaseException]:
        return [1]  # a bug: two requests, one outcome

    coalescer: Coalescer[int, int] = Coalescer(short)
    results = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
