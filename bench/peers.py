"""Benchmark: autorunner's worker against its Python peers, the same no-op job drain, one run.

    .venv/bin/python -m bench.peers [--events 5000] [--rounds 1] [--concurrency 64] [--poll 0.05]
        [--only autorunner-sqlite,autorunner-cloud,taskiq,arq,procrastinate,dbos]
        [--database postgresql://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/0]

The peers are optional benchmark dependencies, not runtime ones: ``pip install -e '.[bench]'``; a
peer that is not installed is skipped. Each round preloads ``--events`` jobs per system, then times
ONE worker process draining them, the systems one after another within the round; the table gives
the median of the rounds and each round. Throw-away names only: a new PostgreSQL database
(``bench_peers_<hex>``, dropped afterwards) and new Redis keys (``bench-peers-<hex>``, deleted
afterwards); the shared Redis is never flushed.

What is compared. autorunner's job is its no-op ``notify`` action, but every step around it stays
durable (claim, lease, decide, ledger intent and result, run record, ack; see ``bench.worker``).
A peer's job is an ``async`` function that returns ``None`` (``bench/peers_tasks.py``), run with
that peer's own guarantees: the gap is the price of autorunner's bookkeeping, not of the queue.

How each worker is configured (``--concurrency`` 64 and ``--poll`` 0.05 s, everything else the
library's default; every process logs at warning, so no line per job):

* autorunner, local (SQLite queue and store, ``synchronous=FULL``): ``bench.worker.preload`` and
  ``bench.worker.drain`` in this process, ``worker_concurrency=64``.
* autorunner, cloud (PostgreSQL store, Redis Streams queue): ``bench.queues.one_round("redis")``
  in this process, ``worker_concurrency=64``.
* taskiq + taskiq-redis ``RedisStreamBroker`` (stream, consumer group, XACK; no result backend):
  ``taskiq worker bench.peers_tasks:taskiq_broker --workers 1 --max-async-tasks 64
  --log-level WARNING`` (prefetch 0, ``xread_count`` 100, ack when saved: the defaults). The
  consumer group is created before the preload (``broker.startup()``), as its default ``$`` start
  would skip jobs added before the worker.
* arq: ``arq bench.peers_tasks.arq_settings --custom-log-dict bench.peers_tasks.arq_log_config``
  with ``max_jobs=64``, ``poll_delay=0.05`` (arq's default 0.5 s sleeps between reads of the
  queue even with a backlog), results kept one hour (the default).
* procrastinate (psycopg 3 connector, LISTEN/NOTIFY): ``procrastinate --app
  bench.peers_tasks.procrastinate_app --log-level warning worker --concurrency 64``.
* DBOS (``dbos``, PostgreSQL system database, configured with a ``DBOSConfig`` dict, no config
  file): ``python -m bench.peers_tasks dbos-worker``, which launches DBOS and waits; its queue is
  registered with ``worker_concurrency=64`` and ``polling_interval_sec=0.05`` (default 1 s: DBOS
  starts at most ``worker_concurrency`` workflows per poll). The jobs are enqueued by another DBOS
  process (``dbos-preload``) that listens to no queue.

``--poll 0`` keeps arq's and DBOS's default intervals instead.

How completion is counted, by each system's own state (no counter in the job): autorunner, its
queue empty and the store's ``done`` count (``bench.worker.drain``); taskiq, the consumer group's
``entries-read`` minus ``pending`` (delivered and acked); arq, the ``arq:result:<id>`` keys of the
preloaded job ids (one ``EXISTS``); procrastinate, ``procrastinate_jobs`` rows ``succeeded``; DBOS,
``dbos.workflow_status`` rows ``SUCCESS``. Polled every 50 ms from this process.

How it is timed. autorunner runs in this process: from the worker's start to the empty queue, CPU
by ``getrusage(RUSAGE_SELF)`` around the drain (it includes the 50 ms polls). A peer's worker is a
subprocess started after the preload: timed from the first poll that sees a finished job to the
poll that sees all of them, jobs/s = jobs finished in between / seconds in between, so its import
and start-up are not counted; CPU is the worker's process tree's user + system time over that same
window, read from ``/proc/<pid>/stat`` (Linux; "n/a" elsewhere). The CPU yardstick
(``bench.calibrate``) is printed with the table: compare runs only when it is close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict

from autorunner import logs
from autorunner.config import Settings
from autorunner.service_loop import run_service
from bench.calibrate import python_loop_seconds
from bench.peers_tasks import arq_preload, procrastinate_preload, taskiq_preload
from bench.queues import one_round
from bench.worker import drain, preload

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POLL_SECONDS = 0.05
INSTALL = "not installed: pip install -e '.[bench]'"

Outcome = tuple[float, float | None]
"""Jobs per second, and the worker's CPU milliseconds per job (None where not measured)."""


@dataclass(frozen=True)
class Peer:
    name: str
    backend: str
    loop: str
    modules: tuple[str, ...]  # what must be importable, else the peer is skipped
    configuration: Callable[[argparse.Namespace], str]
    run: Callable[[argparse.Namespace], Outcome]


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """A new database ``bench_peers_<hex>`` on the server of ``admin_url``, dropped afterwards."""
    name = f"bench_peers_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


def throwaway_name() -> str:
    return f"bench-peers-{uuid.uuid4().hex[:12]}"


def tree_cpu_seconds(root: int) -> float | None:
    """User + system CPU seconds of ``root`` and its live descendants, from ``/proc``."""
    ticks = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, int]] = {}  # pid: (parent, ticks)
    try:
        entries = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        procs[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    if root not in procs:
        return None
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in procs.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(procs[pid][1] for pid in tree) / ticks


def worker_env(**values: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    extra = {f"BENCH_PEERS_{key.upper()}": value for key, value in values.items()}
    return {**os.environ, "PYTHONPATH": path, **extra}


def watch(proc: subprocess.Popen[bytes], events: int, done: Callable[[], int]) -> Outcome:
    """Poll ``done()`` until it reaches ``events``; time and CPU from the first finished job on."""
    deadline = time.monotonic() + 60 + events * 0.05  # a drain slower than 20 jobs/s is a failure
    start: tuple[float, int, float | None] | None = None
    while (count := done()) < events:
        if start is None and count > 0:
            start = (time.perf_counter(), count, tree_cpu_seconds(proc.pid))
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{count} of {events} jobs done; worker exit {proc.poll()}")
        time.sleep(POLL_SECONDS)
    ended, cpu = time.perf_counter(), tree_cpu_seconds(proc.pid)
    if start is None:
        raise RuntimeError(f"all {events} jobs were done at the first look; use more --events")
    started, first, cpu_before = start
    finished = events - first
    cpu_ms = None if cpu is None or cpu_before is None else (cpu - cpu_before) * 1000 / finished
    return finished / (ended - started), cpu_ms


def time_worker(
    cmd: list[str], env: dict[str, str], events: int, done: Callable[[], int]
) -> Outcome:
    """Run the worker ``cmd`` until ``done()`` reaches ``events``, then stop it (SIGTERM)."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            return watch(proc, events, done)
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# autorunner, in this process, with the existing benchmarks' functions


def run_autorunner_sqlite(args: argparse.Namespace) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix="autorunner-bench-"))
    try:
        settings = Settings(
            queue_url=f"sqlite:///{folder / 'worker.db'}",
            worker_concurrency=args.concurrency,
            sqlite_synchronous="FULL",
            log_level="warning",
        )
        asyncio.run(preload(settings, args.events))
        before = resource.getrusage(resource.RUSAGE_SELF)
        elapsed = run_service(drain(settings, args.events))  # as `autorunner worker` runs
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        shutil.rmtree(folder)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return args.events / elapsed, cpu * 1000 / args.events


def run_autorunner_cloud(args: argparse.Namespace) -> Outcome:
    return one_round("redis", args.events, args.concurrency, args.database, args.redis)


# taskiq with taskiq-redis, Redis Streams


def run_taskiq(args: argparse.Namespace) -> Outcome:
    stream = throwaway_name()
    client = redis.Redis.from_url(args.redis, decode_responses=True)
    try:
        asyncio.run(taskiq_preload(args.redis, stream, args.events))

        def acked() -> int:
            (group,) = client.xinfo_groups(stream)
            return int(group["entries-read"] or 0) - int(group["pending"])

        cmd = [
            str(BIN / "taskiq"),
            "worker",
            "bench.peers_tasks:taskiq_broker",
            "--workers=1",
            f"--max-async-tasks={args.concurrency}",
            "--log-level=WARNING",
        ]
        return time_worker(cmd, worker_env(redis=args.redis, queue=stream), args.events, acked)
    finally:
        client.delete(stream, f"autoclaim:taskiq:{stream}")
        client.close()


# arq, Redis


def run_arq(args: argparse.Namespace) -> Outcome:
    from arq import constants  # noqa: PLC0415

    queue = throwaway_name()
    job_ids = [f"{queue}-{n}" for n in range(args.events)]
    results = [constants.result_key_prefix + job_id for job_id in job_ids]
    client = redis.Redis.from_url(args.redis)
    try:
        asyncio.run(arq_preload(args.redis, queue, job_ids))
        cmd = [
            str(BIN / "arq"),
            "bench.peers_tasks.arq_settings",
            "--custom-log-dict=bench.peers_tasks.arq_log_config",
        ]
        env = worker_env(
            redis=args.redis, queue=queue, concurrency=str(args.concurrency), poll=str(args.poll)
        )
        return time_worker(cmd, env, args.events, lambda: int(client.exists(*results)))
    finally:
        prefixes = (
            constants.job_key_prefix,
            constants.result_key_prefix,
            constants.in_progress_key_prefix,
            constants.retry_key_prefix,
        )
        keys = [prefix + job_id for prefix in prefixes for job_id in job_ids]
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.delete(queue, queue + constants.health_check_key_suffix)
        client.close()


# procrastinate, PostgreSQL


def run_procrastinate(args: argparse.Namespace) -> Outcome:
    with throwaway_database(args.database) as database:
        asyncio.run(procrastinate_preload(database, args.events))
        cmd = [
            str(BIN / "procrastinate"),
            "--app=bench.peers_tasks.procrastinate_app",
            "--log-level=warning",
            "worker",
            f"--concurrency={args.concurrency}",
        ]
        sql = b"SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        with psycopg.connect(database, autocommit=True) as conn:
            return time_worker(
                cmd, worker_env(database=database), args.events, lambda: count(conn, sql)
            )


def count(conn: psycopg.Connection[tuple[int]], sql: bytes) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


# DBOS, PostgreSQL


def run_dbos(args: argparse.Namespace) -> Outcome:
    with throwaway_database(args.database) as database:
        env = worker_env(
            database=database,
            queue=throwaway_name(),
            concurrency=str(args.concurrency),
            poll=str(args.poll),
        )
        module = [sys.executable, "-m", "bench.peers_tasks"]
        subprocess.run([*module, "dbos-preload", str(args.events)], env=env, cwd=ROOT, check=True)
        sql = b"SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"
        with psycopg.connect(database, autocommit=True) as conn:
            return time_worker([*module, "dbos-worker"], env, args.events, lambda: count(conn, sql))


def poll_note(args: argparse.Namespace, default: str) -> str:
    return f"{args.poll:g} s" if args.poll > 0 else f"{default} (default)"


PEERS = [
    Peer(
        "autorunner-sqlite",
        "SQLite (queue + store)",
        "uvloop",
        (),
        lambda a: (
            f"in-process `bench.worker.drain`, worker_concurrency {a.concurrency}, synchronous=FULL"
        ),
        run_autorunner_sqlite,
    ),
    Peer(
        "autorunner-cloud",
        "PostgreSQL store + Redis Streams",
        "uvloop",
        (),
        lambda a: f"in-process `bench.queues.one_round`, worker_concurrency {a.concurrency}",
        run_autorunner_cloud,
    ),
    Peer(
        "taskiq",
        "Redis Streams (RedisStreamBroker)",
        "uvloop",
        ("taskiq", "taskiq_redis"),
        lambda a: (
            f"`taskiq worker --workers 1 --max-async-tasks {a.concurrency}`, prefetch 0, "
            "xread_count 100, ack when saved"
        ),
        run_taskiq,
    ),
    Peer(
        "arq",
        "Redis (sorted set)",
        "asyncio",
        ("arq",),
        lambda a: (
            f"`arq`, max_jobs {a.concurrency}, poll_delay {poll_note(a, '0.5 s')}, results kept 1 h"
        ),
        run_arq,
    ),
    Peer(
        "procrastinate",
        "PostgreSQL (psycopg 3)",
        "asyncio",
        ("procrastinate",),
        lambda a: f"`procrastinate worker --concurrency {a.concurrency}`, LISTEN/NOTIFY",
        run_procrastinate,
    ),
    Peer(
        "dbos",
        "PostgreSQL (system database)",
        "asyncio + threads",
        ("dbos",),
        lambda a: (
            f"queue worker_concurrency {a.concurrency}, polling_interval_sec {poll_note(a, '1 s')}"
        ),
        run_dbos,
    ),
]


def installed(peer: Peer) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in peer.modules)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--poll",
        type=float,
        default=0.05,
        help="arq's poll_delay and DBOS's queue polling "
        "interval, in seconds; 0 keeps their defaults (0.5 s and 1 s)",
    )
    parser.add_argument("--only", default=",".join(peer.name for peer in PEERS))
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    names = args.only.split(",")
    if unknown := set(names) - {peer.name for peer in PEERS}:
        parser.error(f"unknown in --only: {', '.join(sorted(unknown))}")
    logs.configure(level="warning")
    conninfo_to_dict(args.database)  # a bad URL fails here, before anything runs
    chosen = [peer for peer in PEERS if peer.name in names]
    for peer in chosen:
        if not installed(peer):
            print(f"{peer.name}: {INSTALL}")
    chosen = [peer for peer in chosen if installed(peer)]
    rates: dict[str, list[float]] = {peer.name: [] for peer in chosen}
    cpu: dict[str, list[float]] = {peer.name: [] for peer in chosen}
    failed: dict[str, str] = {}
    for round_no in range(1, args.rounds + 1):  # the systems alternate within each round
        for peer in chosen:
            if peer.name in failed:
                continue
            try:
                rate, per_job = peer.run(args)
            except Exception as exc:  # one peer's failure must not hide the others' figures
                failed[peer.name] = f"{type(exc).__name__}: {exc}"
                print(f"round {round_no}: {peer.name} failed: {failed[peer.name]}")
                continue
            rates[peer.name].append(rate)
            if per_job is not None:
                cpu[peer.name].append(per_job)
            shown = f"{per_job:.2f} ms/job" if per_job is not None else "CPU n/a"
            print(f"round {round_no}: {peer.name} {rate:,.0f} jobs/s, {shown}", flush=True)
    print_table(args, chosen, rates, cpu, failed)


def print_table(
    args: argparse.Namespace,
    chosen: list[Peer],
    rates: dict[str, list[float]],
    cpu: dict[str, list[float]],
    failed: dict[str, str],
) -> None:
    print(
        f"\n{args.events:,} no-op jobs preloaded, drained by one worker process; {args.rounds} "
        f"round(s); machine: {os.cpu_count()} cores; CPU yardstick {python_loop_seconds():.2f}s\n"
    )
    print(
        "| system | queue / store | worker configuration | event loop | jobs/s (median; rounds) "
        "| worker CPU ms/job |"
    )
    print("|---|---|---|---|---:|---:|")
    for peer in chosen:
        got = rates[peer.name]
        if peer.name in failed:
            rate, per_job = f"failed: {failed[peer.name]}", ""
        else:
            rounds = ", ".join(f"{r:,.0f}" for r in got)
            rate = f"{statistics.median(got):,.0f} ({rounds})"
            per_job = f"{statistics.median(cpu[peer.name]):.2f}" if cpu[peer.name] else "n/a"
        print(
            f"| {peer.name} | {peer.backend} | {peer.configuration(args)} | {peer.loop} | {rate} "
            f"| {per_job} |"
        )


if __name__ == "__main__":
    main()
