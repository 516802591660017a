"""What the SQS and JetStream queues do beyond the shared contract: the cases SQS and JetStream
bring that Redis does not (a resent copy racing its original, a server that lost its streams)."""

from __future__ import annotations

import time

import pytest

from autorunner.errors import QueueUnavailable
from autorunner.queue.sqs import RESEND_AFTER
from tests.backends import nats_queue, postgres_schema, sqs_queue
from tests.helpers import FakeClock
from tests.services import MotoSqs, PrivateNats


async def test_a_resent_sqs_copy_never_takes_the_job_from_the_worker_holding_it(
    sqs_server: MotoSqs,
) -> None:
    async with postgres_schema() as url, sqs_queue(sqs_server, url) as queue:
        await queue.enqueue("e1")
        [held] = await queue.claim("a", limit=10, lease=30, wait=0)
        # A second message for the same job (as a resend would send), delivered meanwhile.
        sqs_server.client().send_message(QueueUrl=queue.url, MessageBody="e1")
        assert await queue.claim("b", limit=10, lease=30, wait=0) == []
        await queue.ack(held)  # still the current delivery: the job is settled
        stats = await queue.stats()
    assert (stats.depth, stats.in_flight) == (0, 0)  # the copy was deleted, not handed out


async def test_a_lost_sqs_message_is_sent_again_once_its_job_goes_unseen(
    sqs_server: MotoSqs,
) -> None:
    clock = FakeClock(now=time.time())
    async with postgres_schema() as url, sqs_queue(sqs_server, url, clock=clock) as queue:
        await queue.enqueue("e1")
        client = sqs_server.client()
        [lost] = client.receive_message(QueueUrl=queue.url)["Messages"]
        client.delete_message(QueueUrl=queue.url, ReceiptHandle=lost["ReceiptHandle"])
        await queue.enqueue("e1")  # the sweeper, soon after: still registered, nothing sent
        assert await queue.claim("c", limit=10, lease=30, wait=0) == []
        clock.advance(RESEND_AFTER + 1)
        await queue.enqueue("e1")  # unseen for RESEND_AFTER: sent again
        jobs = await queue.claim("c", limit=10, lease=30, wait=0)
    assert [job.event_id for job in jobs] == ["e1"]


async def test_a_failed_sqs_send_leaves_the_job_unregistered_for_the_sweeper(
    sqs_server: MotoSqs,
) -> None:
    async with postgres_schema() as url, sqs_queue(sqs_server, url) as queue:
        sqs_server.client().delete_queue(QueueUrl=queue.url)
        with pytest.raises(QueueUnavailable):
            await queue.enqueue("e1")
        async with queue._db.tx() as conn:
            cur = await conn.execute("SELECT count(*) FROM sqs_jobs")
            row = await cur.fetchone()
    assert row == (0,)  # the next enqueue (the sweeper's) sends it


async def test_a_jetstream_server_that_lost_its_streams_gets_them_declared_again(
    nats_server: PrivateNats,
) -> None:
    async with nats_queue(nats_server, lease=30) as queue:
        await queue.drop()  # as a server restarted without its data
        with pytest.raises(QueueUnavailable):
            await queue.enqueue("e1")
        await queue.enqueue("e1")
        jobs = await queue.claim("c", limit=10, lease=30, wait=0)
    assert [job.event_id for job in jobs] == ["e1"]


async def test_a_fifo_sqs_queue_takes_jobs_once_each_and_a_redrive_again(
    sqs_server: MotoSqs,
) -> None:
    async with postgres_schema() as url, sqs_queue(sqs_server, url, fifo=True) as queue:
        await queue.enqueue("e1")
        await queue.enqueue("e1")
        await queue.enqueue("e2", delay=60)  # FIFO takes no per-message delay: sent at once
        jobs = await queue.claim("c", limit=10, lease=30, wait=0)
        assert sorted(j.event_id for j in jobs) == ["e1", "e2"]
        first = next(j for j in jobs if j.event_id == "e1")
        await queue.dead_letter(first, reason="boom")
        await queue.enqueue("e1")  # a redrive: a new deduplication id, so it is sent
        again = await queue.claim("c", limit=10, lease=30, wait=0)
    assert [j.event_id for j in again] == ["e1"]
