"""The approvals' Telegram desk against a fake Bot API over real HTTP: a new request is sent
while a long poll waits for a press, and only an approver's press in the group's chat counts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace

import httpx2

from autorunner.approval_desk import ApprovalDesk
from autorunner.backends import Backends
from autorunner.outbox import StoreThenQueue
from autorunner.policy import ApproverGroup, Policy, default_policy
from autorunner.queue.memory import MemoryQueue
from autorunner.records import ApprovalRequest
from autorunner.store.memory import MemoryStore
from tests.fake_http import serving
from tests.fake_telegram import ApproversBot
from tests.helpers import eventually

POLICY = Policy(
    routes=(),
    default=default_policy().default,
    approvers=(
        ApproverGroup(name="desk", chat_id=-1001, user_ids=(42,)),
        ApproverGroup(name="gone", chat_id=-2002),
    ),
)


def request(n: int) -> ApprovalRequest:
    return ApprovalRequest(
        approval_id=f"ap-{n}",
        event_id=f"e{n}",
        generation=1,
        fingerprint="sha256:x",
        route="default",
        summary=f"order {n}?",
        actions=[{"step_id": "buy", "kind": "http", "params": {}}],
        approvers=["desk"],
        requested_at=float(n),
        expires_at=1e12,
        on_timeout="deny",
    )


@contextlib.asynccontextmanager
async def desk_running(bot: ApproversBot, store: MemoryStore) -> AsyncIterator[None]:
    queue = MemoryQueue()
    backends = Backends(store=store, queue=queue, outbox=StoreThenQueue(store, queue))
    stop = asyncio.Event()
    async with serving(bot) as base, httpx2.AsyncClient() as http:
        desk = ApprovalDesk(
            backends,
            lambda: POLICY,
            http,
            api=base,
            token="t",
            name="w1",
            poll=True,
            poll_seconds=30,  # a long poll outlasts the test: sending must not wait for it
        )
        running = asyncio.create_task(desk.run(stop, every=0.05))
        try:
            yield
        finally:
            stop.set()
            await running
            bot.close()


async def test_a_new_request_is_sent_while_a_long_poll_waits() -> None:
    bot, store = ApproversBot(), MemoryStore()
    async with desk_running(bot, store):
        await eventually(lambda: _true(bot.polls == 1), within=5)
        await store.request_approval(request(1))
        await eventually(lambda: _true(len(bot.sent) == 1), within=5)
    assert bot.polls == 1  # the first long poll was still open when the request went out
    [sent] = bot.sent
    assert (sent["chat_id"], sent["text"]) == (-1001, "order 1?")
    assert sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ap:y:ap-1"


async def test_only_an_approvers_press_in_the_groups_chat_answers() -> None:
    bot, store = ApproversBot(), MemoryStore()
    await store.request_approval(request(1))
    async with desk_running(bot, store):
        await eventually(lambda: _true(len(bot.sent) == 1), within=5)
        bot.press(bot.sent[0], approve=True, user_id=7)  # not in user_ids
        bot.press(bot.sent[0], approve=True, user_id=42, chat_id=555)  # not the group's chat
        await eventually(lambda: _true(len(bot.answers) == 2), within=5)
        pending = await store.get_approval("ap-1")
        assert pending is not None
        assert pending.status == "pending"
        bot.press(bot.sent[0], approve=False, user_id=42)
        await eventually(lambda: _true(len(bot.edits) == 1), within=5)
        # each update is confirmed once handled: a restart resumes after the last
        await eventually(
            lambda: _equal(store.get_flag("telegram_updates_offset"), "1003"), within=5
        )
    answered = await store.get_approval("ap-1")
    assert answered is not None
    assert (answered.status, answered.answered_by) == ("rejected", "telegram:user42")
    assert [a["text"] for a in bot.answers] == [
        "Not yours to answer.",
        "Not yours to answer.",
        "Rejected.",
    ]
    assert bot.edits[0]["text"].endswith("Rejected by telegram:user42.")


async def _true(value: bool) -> bool:
    return value


async def _equal(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected


async def test_a_chat_that_refuses_holds_back_neither_its_group_peers_nor_later_requests() -> None:
    bot, store = ApproversBot(), MemoryStore()
    bot.missing_chats.add(-2002)  # the bot was removed from that chat
    both = replace(request(1), approvers=["gone", "desk"], summary="x" * 5000)
    await store.request_approval(both)
    await store.request_approval(replace(request(2), approvers=["gone"]))
    await store.request_approval(request(3))
    async with desk_running(bot, store):
        await eventually(lambda: _true(len(bot.sent) == 2), within=5)
        first = await store.get_approval("ap-1")
        assert first is not None
        assert first.message is not None
        assert [f["group"] for f in first.message["failures"]] == ["gone"]
    assert [m["text"][:1] for m in bot.sent] == ["x", "o"]  # ap-1 to the desk, then ap-3
    assert len(bot.sent[0]["text"]) == 4096  # cut to what Telegram takes
    unsent = await store.get_approval("ap-2")
    assert unsent is not None
    assert unsent.message is None  # no chat took it: tried again later, backing off


async def test_a_malformed_update_is_skipped_and_the_desk_goes_on() -> None:
    bot, store = ApproversBot(), MemoryStore()
    await store.request_approval(request(1))
    async with desk_running(bot, store):
        await eventually(lambda: _true(len(bot.sent) == 1), within=5)
        broken = bot.press(bot.sent[0], approve=True, user_id=42)
        broken["callback_query"]["from"] = "not an object"
        bot.press(bot.sent[0], approve=True, user_id=42)
        await eventually(
            lambda: _equal(store.get_flag("telegram_updates_offset"), "1002"), within=5
        )
    answered = await store.get_approval("ap-1")
    assert answered is not None
    assert (answered.status, answered.answered_by) == ("approved", "telegram:user42")
