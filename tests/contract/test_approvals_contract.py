"""The Approvals contract: asked once, the first answer wins, an answer (or a timeout) brings its
parked event back — on every backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from autorunner.queue.base import Queue
from autorunner.records import ApprovalRequest
from autorunner.store.base import StoreBackend
from tests.contract.records import run
from tests.helpers import FakeClock, make_event, raw_delivery

Backends = tuple[StoreBackend, Queue]


def request(event_id: str = "e1", *, at: float = 0.0, **changes: object) -> ApprovalRequest:
    asked = ApprovalRequest(
        approval_id=f"ap-{event_id}",
        event_id=event_id,
        generation=1,
        fingerprint="sha256:abc",
        route="orders",
        summary="buy 1 BTC?",
        actions=[{"step_id": "buy", "kind": "exchange", "params": {"amount": 1}}],
        approvers=["desk"],
        requested_at=at,
        expires_at=at + 900,
        on_timeout="deny",
    )
    return replace(asked, **changes)  # type: ignore[arg-type]


async def parked(store: StoreBackend, event_id: str, clock: FakeClock) -> None:
    """``event_id`` stored, run once and parked for its approval, as a worker does."""
    await store.insert_event(make_event(event_id), raw_delivery())
    await store.acquire(event_id, owner="w", lease=30)
    await store.request_approval(request(event_id, at=clock()))
    awaiting = replace(
        run(event_id, outcome="awaiting"), approval={"approval_id": f"ap-{event_id}"}
    )
    await store.finish(awaiting, owner="w")


async def status_of(store: StoreBackend, event_id: str) -> str:
    detail = await store.get_event(event_id)
    assert detail is not None
    return detail.summary.status


async def test_an_approval_is_asked_once_and_found_again(backends: Backends) -> None:
    store, _ = backends
    first = await store.request_approval(request(at=1.0))
    again = await store.request_approval(request(at=50.0))  # a retry, a takeover asks again
    assert again == first
    assert (again.status, again.requested_at) == ("pending", 1.0)
    assert await store.get_approval("ap-e1") == first
    assert await store.get_approval("ap-nope") is None


async def test_the_first_answer_wins_and_a_second_changes_nothing(backends: Backends) -> None:
    store, _ = backends
    await store.request_approval(request())
    first = await store.answer_approval(
        "ap-e1", approve=True, by="ann", via="telegram", reason=None, at=5.0
    )
    second = await store.answer_approval(
        "ap-e1", approve=False, by="bo", via="cli", reason="no", at=6.0
    )
    assert first is not None
    assert second is not None
    assert (first.changed, first.view.status, first.view.answered_by) == (True, "approved", "ann")
    assert (second.changed, second.view.status, second.view.answered_by) == (
        False,
        "approved",
        "ann",
    )
    assert (
        await store.answer_approval("ap-none", approve=True, by="x", via="cli", reason=None, at=1.0)
        is None
    )


async def test_two_answers_racing_decide_once(backends: Backends) -> None:
    store, _ = backends
    await store.request_approval(request())
    answers = await asyncio.gather(
        *(
            store.answer_approval(
                "ap-e1", approve=n % 2 == 0, by=f"p{n}", via="console", reason=None, at=float(n)
            )
            for n in range(6)
        )
    )
    assert sum(1 for a in answers if a is not None and a.changed) == 1
    final = await store.get_approval("ap-e1")
    assert final is not None
    assert {a.view.status for a in answers if a is not None} == {final.status}
    journal = [o for o in await store.list_operations(limit=10) if o.target == "ap-e1"]
    assert len(journal) == 1


async def test_a_parked_event_waits_without_counting_the_attempt_and_an_answer_brings_it_back(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    await parked(store, "e1", clock)
    assert await status_of(store, "e1") == "awaiting"
    assert await store.sweepable(older_than=clock() + 10_000, limit=10) == []
    answer = await store.answer_approval(
        "ap-e1", approve=False, by="ann", via="console", reason="too big", at=clock()
    )
    assert answer is not None
    assert answer.resumed
    assert await status_of(store, "e1") == "pending"
    again = await store.acquire("e1", owner="w", lease=30)
    assert again is not None
    assert again.attempt == 1  # waiting for a person was not an attempt
    [journaled] = [o for o in await store.list_operations(limit=5) if o.target == "ap-e1"]
    assert (journaled.actor, journaled.action, journaled.detail) == (
        "ann",
        "approval.reject",
        {"via": "console", "approved": False, "reason": "too big"},
    )


async def test_an_answer_before_the_parking_leaves_the_event_to_run_on(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w", lease=30)
    await store.request_approval(request("e1", at=clock()))
    await store.answer_approval("ap-e1", approve=True, by="ann", via="cli", reason=None, at=1.0)
    awaiting = replace(run("e1", outcome="awaiting"), approval={"approval_id": "ap-e1"})
    await store.finish(awaiting, owner="w")
    assert await status_of(store, "e1") == "pending"


async def test_a_timeout_answers_as_on_timeout_says_and_brings_the_event_back(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    await parked(store, "e1", clock)
    await store.insert_event(make_event("e2"), raw_delivery())
    await store.request_approval(request("e2", at=clock(), on_timeout="approve"))
    assert await store.expire_approvals(now=clock() + 899, limit=10) == []
    assert await store.expire_approvals(now=clock() + 900, limit=10) == ["e1"]
    denied, approved = await store.get_approval("ap-e1"), await store.get_approval("ap-e2")
    assert denied is not None
    assert approved is not None
    assert (denied.status, denied.approved, denied.answered_via) == ("expired", False, "timeout")
    assert (approved.status, approved.approved) == ("expired", True)
    assert await status_of(store, "e1") == "pending"


async def test_requests_not_sent_yet_are_listed_oldest_first_until_marked(
    backends: Backends,
) -> None:
    store, _ = backends
    await store.request_approval(request("e1", at=2.0))
    await store.request_approval(request("e2", at=1.0))
    unsent = await store.list_approvals(limit=10, unnotified=True)
    assert [v.approval_id for v in unsent] == ["ap-e2", "ap-e1"]
    await store.mark_notified("ap-e2", {"chat_id": -100, "message_id": 7})
    assert [v.approval_id for v in await store.list_approvals(limit=10, unnotified=True)] == [
        "ap-e1"
    ]
    sent = await store.get_approval("ap-e2")
    assert sent is not None
    assert sent.message == {"chat_id": -100, "message_id": 7}
    assert [v.approval_id for v in await store.list_approvals(limit=10)] == ["ap-e1", "ap-e2"]
    assert await store.list_approvals(limit=10, status="approved") == []


async def test_an_answer_after_the_deadline_counts_as_the_timeout(backends: Backends) -> None:
    store, _ = backends
    await store.request_approval(request(at=0.0))  # expires at 900, on_timeout deny
    late = await store.answer_approval(
        "ap-e1", approve=True, by="ann", via="telegram", reason=None, at=901.0
    )
    assert late is not None
    assert late.changed
    view = late.view
    assert (view.status, view.approved, view.answered_by, view.answered_via) == (
        "expired",
        False,
        "timeout",
        "timeout",
    )
    assert view.reason == "ann via telegram answered late"
