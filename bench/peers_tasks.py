"""The no-op job of each peer in ``bench.peers``, where the peer's own worker loads it by path,
and the preloading of those jobs through each peer's own client.

    taskiq worker bench.peers_tasks:taskiq_broker --workers 1 --max-async-tasks 64
    arq bench.peers_tasks.arq_settings --custom-log-dict bench.peers_tasks.arq_log_config
    procrastinate --app bench.peers_tasks.procrastinate_app --log-level warning worker -c 64
    .venv/bin/python -m bench.peers_tasks dbos-worker   (DBOS has no worker command of its own)

Each attribute is built on first access (a module ``__getattr__``) from the ``BENCH_PEERS_*``
environment variables that ``bench.peers`` sets for the round, so this module imports without any
peer installed. Every job is the same ``async`` function that returns ``None``, registered under
the name ``bench_noop``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from typing import Any

NAME = "bench_noop"
DBOS_APP = "bench_peers"


async def noop() -> None:
    """The job: nothing."""


async def arq_noop(ctx: dict[str, Any]) -> None:
    """The job for arq, whose functions take its context first."""


def env(name: str) -> str:
    return os.environ[f"BENCH_PEERS_{name}"]


def taskiq_broker_for(redis: str, queue: str) -> Any:
    """A Redis Streams broker (consumer group ``taskiq``) with the no-op task, no result backend."""
    from taskiq_redis import RedisStreamBroker  # noqa: PLC0415 - an optional benchmark dependency

    broker = RedisStreamBroker(redis, queue_name=queue)
    broker.register_task(noop, task_name=NAME)
    return broker


def arq_settings_for(redis: str, queue: str, concurrency: int, poll: float) -> dict[str, Any]:
    """arq ``WorkerSettings`` as a dict: its defaults but for ``max_jobs`` and ``poll_delay``."""
    from arq import func  # noqa: PLC0415
    from arq.connections import RedisSettings  # noqa: PLC0415

    settings: dict[str, Any] = {
        "functions": [func(arq_noop, name=NAME)],
        "redis_settings": RedisSettings.from_dsn(redis),
        "queue_name": queue,
        "max_jobs": concurrency,
    }
    if poll > 0:
        settings["poll_delay"] = poll
    return settings


def procrastinate_app_for(conninfo: str) -> Any:
    """A procrastinate app on the psycopg 3 connector, with the no-op task."""
    import procrastinate  # noqa: PLC0415

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    app.task(name=NAME)(noop)
    return app


async def taskiq_preload(redis_url: str, stream: str, events: int) -> None:
    broker = taskiq_broker_for(redis_url, stream)
    await broker.startup()  # creates the consumer group (at "$") before any job is added
    task = broker.find_task(NAME)
    for start in range(0, events, 500):
        await asyncio.gather(*(task.kiq() for _ in range(start, min(events, start + 500))))
    await broker.shutdown()


async def arq_preload(redis_url: str, queue: str, job_ids: list[str]) -> None:
    from arq import create_pool  # noqa: PLC0415 - an optional benchmark dependency
    from arq.connections import RedisSettings  # noqa: PLC0415

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        for start in range(0, len(job_ids), 64):  # redis-py's pool holds 100 connections
            await asyncio.gather(
                *(
                    pool.enqueue_job(NAME, _job_id=job_id, _queue_name=queue)
                    for job_id in job_ids[start : start + 64]
                )
            )
    finally:
        await pool.aclose()


async def procrastinate_preload(database: str, events: int) -> None:
    app = procrastinate_app_for(database)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.tasks[NAME].batch_defer_async(*({} for _ in range(events)))


@functools.cache
def __getattr__(name: str) -> Any:
    """The objects the peers' worker commands load by path, for the round in the environment."""
    if name == "taskiq_broker":
        return taskiq_broker_for(env("REDIS"), env("QUEUE"))
    if name == "arq_settings":
        return arq_settings_for(
            env("REDIS"), env("QUEUE"), int(env("CONCURRENCY")), float(env("POLL"))
        )
    if name == "arq_log_config":  # arq's own handler, at warning: no line per job
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"arq": {"level": "WARNING", "class": "logging.StreamHandler"}},
            "loggers": {"arq": {"handlers": ["arq"], "level": "WARNING"}},
        }
    if name == "procrastinate_app":
        return procrastinate_app_for(env("DATABASE"))
    raise AttributeError(name)


def dbos_launch(*, listen: bool) -> Any:
    """Configure DBOS without a config file, register the no-op workflow and the queue, launch."""
    from dbos import DBOS  # noqa: PLC0415

    DBOS(
        config={
            "name": DBOS_APP,
            "system_database_url": env("DATABASE"),
            "application_version": "bench",  # the same in the preloading and the worker process
            "log_level": "WARNING",
        }
    )
    DBOS.workflow(name=NAME)(noop)
    if not listen:
        DBOS.listen_queues([])
    DBOS.launch()
    options: dict[str, Any] = {"worker_concurrency": int(env("CONCURRENCY"))}
    if float(env("POLL")) > 0:
        options["polling_interval_sec"] = float(env("POLL"))
    return DBOS.register_queue(env("QUEUE"), **options)


async def dbos_enqueue(queue: Any, count: int, batch: int = 64) -> None:
    for start in range(0, count, batch):
        await asyncio.gather(
            *(queue.enqueue_async(noop) for _ in range(start, min(count, start + batch)))
        )


def dbos_main(argv: list[str]) -> None:
    """``dbos-preload N``: enqueue N workflows, listening to no queue; ``dbos-worker``: drain
    them until SIGTERM or SIGINT."""
    from dbos import DBOS  # noqa: PLC0415

    if argv[0] == "dbos-preload":
        asyncio.run(dbos_enqueue(dbos_launch(listen=False), int(argv[1])))
    else:
        stop = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # DBOS's threads inherit the mask
        dbos_launch(listen=True)
        signal.sigwait(stop)
    DBOS.destroy()


if __name__ == "__main__":
    dbos_main(sys.argv[1:])
