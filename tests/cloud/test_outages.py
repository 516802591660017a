"""Outages in cloud mode, against private Redis and PostgreSQL servers: PostgreSQL restarted
under an ingress and a worker that stay up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest

from tests.cloud.harness import Sent, cloud_stack, deliver, fake_api
from tests.helpers import eventually


@pytest.mark.timeout(300)
async def test_postgresql_restart_gets_503_meanwhile_and_the_same_processes_recover(
    tmp_path: Path,
) -> None:
    sent = Sent()
    with fake_api(tmp_path) as api, cloud_stack(tmp_path, api) as stack:
        ingress = stack.start("ingress")
        worker = stack.start("worker")
        base = ingress.url.removesuffix("/webhooks/auto")
        await deliver([ingress.url], [f"pg-a-{n:03d}" for n in range(200)], sent, concurrency=8)
        assert len(sent.accepted) == 200

        await asyncio.to_thread(stack.postgres.stop)
        outage = Sent()
        await deliver(
            [ingress.url],
            [f"pg-b-{n:03d}" for n in range(50)],
            outage,
            concurrency=4,
            resend_refused=False,
        )
        async with httpx2.AsyncClient(timeout=10) as client:
            ready_during = (await client.get(f"{base}/readyz")).status_code
        await asyncio.to_thread(stack.postgres.start)

        # The same ingress takes deliveries again once PostgreSQL is back: Auto's retries of
        # the refused ones, then new ones.
        after = Sent()

        async def accepting_again() -> bool:
            await deliver([ingress.url], outage.refused[:1], after, concurrency=1)
            return bool(after.accepted)

        await eventually(accepting_again, within=60, interval=0.2)
        await deliver([ingress.url], outage.refused, after, concurrency=4)
        await deliver([ingress.url], [f"pg-c-{n:03d}" for n in range(200)], after, concurrency=8)

        acked = sent.accepted | outage.accepted | after.accepted

        async def all_done() -> bool:
            query = "SELECT count(*) FROM events WHERE status = 'done'"
            return await asyncio.to_thread(stack.count, query) == len(acked)

        await eventually(all_done, within=120, interval=0.5)
        stored = {row[0] for row in stack.sql("SELECT event_id FROM events")}
        alive = ingress.process.poll() is None and worker.process.poll() is None
        counts = api.counts()

    # During the outage every delivery was refused with 503: nothing acknowledged unstored.
    assert outage.accepted == set()
    assert len(outage.refused) == 50
    assert outage.other == []
    assert ready_during == 503
    # Afterwards, without a restart: every refused delivery and every new one was taken and run.
    assert alive
    assert after.other == []
    assert acked == {
        f"pg-{p}-{n:03d}"
        for p, total in zip("abc", (200, 50, 200), strict=True)
        for n in range(total)
    }
    assert stored == acked
    assert set(counts["performed"].values()) == {1}
    assert len(counts["performed"]) == len(acked)
