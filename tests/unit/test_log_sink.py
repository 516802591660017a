"""The JSON log path: bytes from orjson, one flush per event-loop pass, nothing raised at a
closed pipe, the standard library's lines in order with ours."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from autorunner import logs


class CountingRaw(io.RawIOBase):
    """What reaches the file descriptor, and in how many ``write`` calls."""

    def __init__(self, *, broken: bool = False) -> None:
        self.data = bytearray()
        self.writes = 0
        self.attempts = 0
        self.broken = broken

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.attempts += 1
        if self.broken:
            raise BrokenPipeError
        self.writes += 1
        self.data.extend(b)
        return len(b)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.data.decode().splitlines()]


@pytest.fixture
def raw(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingRaw]:
    target = CountingRaw()
    stream = io.TextIOWrapper(io.BufferedWriter(target, 1 << 16), line_buffering=True)
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure(level="info", fmt="json")
    yield target
    structlog.reset_defaults()
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "autorunner", False)]


async def test_lines_logged_in_one_loop_pass_reach_the_file_in_one_write_after_it(
    raw: CountingRaw,
) -> None:
    log = structlog.get_logger()
    for n in range(3):
        log.info("event.accepted", event_id=f"e-{n}")
    assert raw.writes == 0  # buffered until the loop's pass ends
    await asyncio.sleep(0)
    assert raw.writes == 1
    assert [line["event_id"] for line in raw.lines()] == ["e-0", "e-1", "e-2"]


def test_outside_an_event_loop_each_line_is_written_at_once(raw: CountingRaw) -> None:
    log = structlog.get_logger()
    log.info("cli.done", n=1)
    assert raw.writes == 1
    log.info("cli.done", n=2)
    assert [line["n"] for line in raw.lines()] == [1, 2]


def test_a_value_orjson_refuses_is_still_logged(raw: CountingRaw) -> None:
    structlog.get_logger().info("huge", value=2**70, key={1: "non-string key"})
    (line,) = raw.lines()
    assert line["value"] == 2**70
    assert line["key"] == {"1": "non-string key"}


async def test_standard_library_lines_and_ours_keep_their_order_in_one_loop_pass(
    raw: CountingRaw,
) -> None:
    structlog.get_logger().info("first")
    logging.getLogger("some.library").warning("second")  # flushed at once, after "first"
    structlog.get_logger().info("third")
    await asyncio.sleep(0)
    assert [line["event"] for line in raw.lines()] == ["first", "second", "third"]


async def test_a_warning_is_written_at_once_even_on_the_loop(raw: CountingRaw) -> None:
    log = structlog.get_logger()
    log.info("held")
    assert raw.writes == 0
    log.warning("webhook.unavailable")
    assert [line["event"] for line in raw.lines()] == ["held", "webhook.unavailable"]


async def test_flush_writes_what_the_loop_pass_holds(raw: CountingRaw) -> None:
    structlog.get_logger().info("job.done")
    logs.flush()  # what the serverless handlers call before their environment may freeze
    assert [line["event"] for line in raw.lines()] == ["job.done"]


def test_a_dataclass_is_logged_by_its_repr_which_may_hide_a_secret(raw: CountingRaw) -> None:
    @dataclass
    class Credentials:
        api_key: str

        def __repr__(self) -> str:
            return "Credentials(set=['api_key'])"

    structlog.get_logger().info("auth", credentials=Credentials("sk-secret"))
    (line,) = raw.lines()
    assert line["credentials"] == "Credentials(set=['api_key'])"
    assert "sk-secret" not in raw.data.decode()


async def test_a_closed_pipe_stops_the_lines_without_raising(raw: CountingRaw) -> None:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    raw.broken = True
    log = structlog.get_logger()
    log.info("event.accepted", event_id="e-1")
    await asyncio.sleep(0)  # the deferred flush meets the closed pipe
    log.info("event.accepted", event_id="e-2")
    await asyncio.sleep(0)
    log.warning("webhook.unavailable")
    assert errors == []
    assert raw.attempts == 1  # once gone, the sink tries no more


def test_a_flush_left_due_by_a_stopped_loop_does_not_hold_back_later_lines(
    raw: CountingRaw,
) -> None:
    log = structlog.get_logger()

    async def log_then_stop() -> None:
        log.info("in the loop")
        asyncio.get_running_loop().stop()  # the loop ends with this pass: its flush never runs

    loop = asyncio.new_event_loop()
    loop.run_until_complete(log_then_stop())
    loop.close()
    assert raw.writes == 0
    log.info("after the loop")
    assert [line["event"] for line in raw.lines()] == ["in the loop", "after the loop"]
