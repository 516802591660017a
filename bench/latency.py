"""Benchmark: trigger → effect latency, end to end, at a fixed open-loop rate.

    .venv/bin/python -m bench.latency [--duration 10] [--local-rate 1000] [--cloud-rate 500]
        [--modes local,cloud] [--channels webhook,sse] [--api process|loop]
        [--database postgresql://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/0]

For each mode — local (``autorunner serve``: SQLite with SQLITE_SYNCHRONOUS=FULL) and cloud (one
``autorunner ingress`` + one ``autorunner worker``: a throw-away PostgreSQL database, a fresh
Redis Streams queue name) — with LOG_LEVEL=info and JSON log lines to /dev/null, the policy has
one route whose rules decide one ``http`` action: a POST to the endpoint ``orders``
(``HTTP_ENDPOINTS``), a fake internal API served by this benchmark that records when each call
arrives, keyed by the event id the call carries (``Idempotency-Key: <event id>:order``).

Triggers leave on a fixed schedule (``--local-rate``/``--cloud-rate`` per second, for
``--duration`` seconds, distinct event ids), and each event's latency is its effect's arrival at
the internal API minus its *scheduled* fire time, so a stall is charged to every trigger that
should have left meanwhile (no coordinated omission). The channels:

- ``webhook``: pre-signed Elfa ``v1`` webhooks on 32 keep-alive connections
  (``POST /webhooks/auto``); the acknowledgement latency is reported beside it;
- ``sse``: the simulator (``autorunner.sim``, served in this process) pushes one frame per
  trigger on the query's event stream, which the runner follows (``STREAM_QUERIES``, with
  ``ELFA_API_KEY``/``ELFA_BASE_URL`` pointing at the simulator; the query has no webhook action,
  so the stream is the only way in).

The rates are parameters: the issue asks for latency at half the maximum sustained rate, which
``bench.ingest``/``bench.cloud``/``bench.worker`` measure; they are printed with the figures.
Before each measured run 50 triggers warm the path up (connections, pools) and are not counted.
Each case prints fired vs performed (they must be equal; a shortfall is named), the rate effects
were performed at (first trigger's schedule to last effect) — below 95 % of the firing rate the
runner did not keep up, a backlog grew and the latencies are mostly queueing — and the CPU the
runner process(es), the load generator and the internal API used meanwhile.

The internal API is a minimal asyncio protocol (no framework) in a process of its own by default
(``--api process``), so neither it nor the load generator delays the other's clock readings;
``--api loop`` serves it on the load generator's event loop instead, for comparison. Both read
``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process of the machine). Measured on
2 cores at 1,000 webhooks/s: the API costs about 0.07 ms of CPU per call and the load generator
about 0.1 ms per trigger, and triggers left at most ~20 ms after their schedule ("latest
departure") unless the runner held all 32 connections waiting for acknowledgements (then the
wait is charged to those triggers, counted from their schedule), so neither limits the rates
the runner can take here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from tests.fake_http import serving

from autorunner.cli.tools import serve_forever
from autorunner.sim.api import SimQuery
from autorunner.sim.simulator import SimConfig, Simulator
from bench.calibrate import python_loop_seconds
from bench.cloud import cloud_env, fresh_database
from bench.ingest import (
    VENV_BIN,
    free_port,
    raw_request,
    runner_env,
    serve_cmd,
    server,
    signed_lines,
)
from bench.orders_api import Api, internal_api
from bench.redis_keys import fresh_queue
from bench.triggers import Fired, fire_frames, fire_webhooks

POLICY = """
[default]
allowed_actions = ["notify"]

[[routes]]
name = "orders"
match = { event_type = "query.triggered" }
objective = "Place the desk's order"
allowed_actions = ["http"]
context = []

[[routes.rules]]
when = { status = "triggered" }
actions = [
  { step = "order", kind = "http", params = { endpoint = "orders", body = { symbol = "BTC", notional_usd = 100 } } },
]
"""
STEP = "order"
SIM_API_KEY = "bench-elfa-key"
WARMUP = 50


# -- measuring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    name: str
    rate: float
    fired: Fired
    latencies_ms: list[float]
    effects_per_second: float
    """Performed effects over the time from the first trigger's schedule to the last effect."""
    missing: int
    repeats: int
    api_cpu: float | None
    bench_cpu: float
    runner_cpu: dict[str, float]
    wall: float
    """Seconds from the first trigger's preparation to the last effect (or giving up)."""

    def percentile(self, values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0

    def lines(self) -> list[str]:
        f, lat = self.fired, self.latencies_ms
        performed = len(lat)
        fired = len(f.due)
        verdict = "all performed" if performed == fired else f"NOT EQUAL: {self.missing} missing"
        out = [
            f"{self.name} at {self.rate:,.0f}/s: fired {fired:,} in {f.elapsed:.1f}s "
            f"({fired / f.elapsed:,.0f}/s, latest departure {f.late_ms:.1f} ms after schedule), "
            f"performed {performed:,} ({verdict}; {self.repeats} repeated calls)",
        ]
        kept_up = self.effects_per_second >= 0.95 * fired / f.elapsed
        out.append(
            f"  effects performed at {self.effects_per_second:,.0f}/s"
            + (
                ""
                if kept_up
                else ": the runner did NOT keep up — a backlog grew, latency is mostly queueing"
            )
        )
        if lat:
            p = self.percentile
            out.append(
                f"  trigger → effect: p50 {p(lat, 50):.1f} ms, p90 {p(lat, 90):.1f} ms, "
                f"p99 {p(lat, 99):.1f} ms, max {max(lat):.1f} ms"
            )
        if f.acks_ms:
            out.append(
                f"  webhook acknowledged: statuses {dict(sorted(f.statuses.items()))}, "
                f"p50 {self.percentile(f.acks_ms, 50):.1f} ms, "
                f"p99 {self.percentile(f.acks_ms, 99):.1f} ms"
            )
        api = (
            f"internal API process {self.api_cpu:.2f}s"
            if self.api_cpu is not None
            else "the internal API runs on the load generator's loop"
        )
        runner = ", ".join(f"{role} {sec:.2f}s" for role, sec in self.runner_cpu.items())
        out.append(
            f"  CPU over those {self.wall:.1f}s: {runner}; load generator process "
            f"{self.bench_cpu:.2f}s; {api}"
        )
        return out


async def arrived(api: Api, want: int, *, quiet_for: float) -> None:
    """Wait until ``want`` effects have arrived, or none has for ``quiet_for`` seconds."""
    last, changed = -1, time.monotonic()
    while (now := await api.count()) < want:
        if now != last:
            last, changed = now, time.monotonic()
        elif time.monotonic() - changed > quiet_for:
            return
        await asyncio.sleep(0.05)


async def measure(
    name: str,
    *,
    rate: float,
    api: Api,
    fire: Callable[[int, float], Awaitable[Fired]],
    count: int,
    drain: float,
    pids: dict[str, int],
) -> Outcome:
    """Warm up with ``WARMUP`` triggers, then fire ``count`` at ``rate`` and wait for effects."""
    before = await api.count()
    warm = await fire(WARMUP, min(rate, 100.0))
    await arrived(api, before + len(warm.due), quiet_for=drain)
    if (await api.count()) < before + len(warm.due):
        raise SystemExit(f"bench.latency: {name}: the warm-up's effects did not all arrive")
    before = await api.count()
    cpu, api_cpu, wall = time.process_time(), await api.cpu(), time.monotonic()
    runner_cpu = {role: cpu_seconds(pid) for role, pid in pids.items()}
    fired = await fire(count, rate)
    await arrived(api, before + len(fired.due), quiet_for=drain)
    bench_cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    runner_cpu = {role: cpu_seconds(pid) - runner_cpu[role] for role, pid in pids.items()}
    report = await api.report()
    keys = {event_id: f"{event_id}:{STEP}" for event_id in fired.due}
    latencies = [
        (report.arrivals.first[key] - fired.due[event_id]) * 1000
        for event_id, key in keys.items()
        if key in report.arrivals.first
    ]
    performed = [report.arrivals.first[k] for k in keys.values() if k in report.arrivals.first]
    span = max(performed, default=0.0) - min(fired.due.values(), default=0.0)
    return Outcome(
        name=name,
        effects_per_second=len(performed) / span if performed and span > 0 else 0.0,
        rate=rate,
        fired=fired,
        latencies_ms=latencies,
        missing=len(keys) - len(latencies),
        repeats=sum(report.arrivals.repeats.get(key, 0) for key in keys.values()),
        api_cpu=None
        if report.cpu_seconds is None or api_cpu is None
        else report.cpu_seconds - api_cpu,
        bench_cpu=bench_cpu,
        runner_cpu=runner_cpu,
        wall=wall,
    )


# -- the runner and the simulator ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    mode: str
    channel: str
    rate: float


def sim_query() -> SimQuery:
    """A query whose only action is not a webhook: its triggers come in by the stream alone."""
    return SimQuery(
        id=f"bench-{uuid.uuid4().hex[:8]}",
        body={
            "title": "Bench: BTC probe",
            "description": "BTC crossed the bench threshold",
            "query": {
                "conditions": {
                    "AND": [
                        {
                            "source": "price",
                            "method": "current",
                            "args": {"symbol": "BTC"},
                            "operator": ">",
                            "value": 0,
                        }
                    ]
                },
                "actions": [{"stepId": "s1", "type": "notify", "params": {}}],
            },
        },
    )


def stream_env(sim_base: str, query: SimQuery) -> dict[str, str]:
    return {
        "ELFA_API_KEY": SIM_API_KEY,
        "ELFA_BASE_URL": f"{sim_base}/v2/auto",
        "STREAM_QUERIES": query.id,
        "ELFA_REQUESTS_PER_MINUTE": "6000",
    }


@dataclass(frozen=True)
class Runners:
    stack: contextlib.ExitStack
    """Closing it stops the processes (and drops the database and queue they used)."""
    port: int
    """Where webhooks go."""
    pids: dict[str, int]


def cpu_seconds(pid: int) -> float:
    """User + system CPU a live process has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runners(case: Case, args: argparse.Namespace, tmp: Path, extra: dict[str, str]) -> Runners:
    """Start the case's runner process(es)."""
    stack = contextlib.ExitStack()
    port = free_port()
    try:
        if case.mode == "local":
            db = tmp / f"{case.channel}-{uuid.uuid4().hex[:6]}.db"
            env = {
                **runner_env(db, port, workers=True, log_level="info"),
                "SQLITE_SYNCHRONOUS": "FULL",
                **extra,
            }
            proc = stack.enter_context(server(serve_cmd(), port, env))
            return Runners(stack, port, {"serve": proc.pid})
        database = stack.enter_context(fresh_database(args.database))
        queue = stack.enter_context(fresh_queue(args.redis))
        pids = {}
        for role, role_port in (("ingress", port), ("worker", free_port())):
            env = cloud_env(database, args.redis, queue, role_port, LOG_LEVEL="info", **extra)
            cmd = [str(VENV_BIN / "autorunner"), role]
            pids[role] = stack.enter_context(server(cmd, role_port, env)).pid
    except BaseException:
        stack.close()
        raise
    return Runners(stack, port, pids)


async def run_case(case: Case, args: argparse.Namespace, api: Api, tmp: Path) -> Outcome:
    count = int(case.rate * args.duration)
    extra = {
        "RUNNER_POLICY": str(tmp / "policy.toml"),
        "HTTP_ENDPOINTS": f"orders={api.url}",
    }
    name = f"{case.mode} · {case.channel}"

    async def measured(
        started: Runners,
        fire: Callable[[int, float], Awaitable[Fired]],
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> Outcome:
        try:
            if ready is not None:
                await ready()
            return await measure(
                name,
                rate=case.rate,
                api=api,
                fire=fire,
                count=count,
                drain=args.drain,
                pids=started.pids,
            )
        finally:
            await asyncio.to_thread(started.stack.close)

    if case.channel == "webhook":
        started = await asyncio.to_thread(runners, case, args, tmp, extra)
        port = started.port
        signed = [(row[0], raw_request(row, port)) for row in signed_lines(WARMUP + count)]

        async def fire(n: int, rate: float) -> Fired:
            requests = signed[:n]
            del signed[:n]
            return await fire_webhooks(port, requests, rate)

        return await measured(started, fire)

    sim = Simulator(SimConfig(api_key=SIM_API_KEY, keepalive=5.0))
    query = sim_query()
    sim.queries[query.id] = query
    async with serving(sim.app, lifespan="on") as sim_base:
        started = await asyncio.to_thread(
            runners, case, args, tmp, {**extra, **stream_env(sim_base, query)}
        )

        async def streaming() -> None:
            async with asyncio.timeout(30):
                while not sim.streams.get(query.id):  # noqa: ASYNC110 - the simulator's own state
                    await asyncio.sleep(0.02)

        async def fire_sse(n: int, rate: float) -> Fired:
            return await fire_frames(sim, query, n, rate)

        return await measured(started, fire_sse, streaming)


# -- main ------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="autorunner-bench-latency-") as folder:
        await run_all(args, Path(folder))


async def run_all(args: argparse.Namespace, tmp: Path) -> None:
    (tmp / "policy.toml").write_text(POLICY)
    rates = {"local": args.local_rate, "cloud": args.cloud_rate}
    cases = [Case(m, c, rates[m]) for m in args.modes.split(",") for c in args.channels.split(",")]
    outcomes = []
    async with internal_api(args.api) as api:
        for case in cases:
            outcome = await run_case(case, args, api, tmp)
            print("\n".join(outcome.lines()), flush=True)
            outcomes.append(outcome)
    print(
        f"\nmachine: {os.cpu_count()} cores; runner LOG_LEVEL=info (JSON lines to /dev/null); "
        f"local: SQLite SQLITE_SYNCHRONOUS=FULL; cloud: 1 ingress + 1 worker, PostgreSQL "
        f"{conninfo_to_dict(args.database).get('host')}, Redis {args.redis}; internal API: "
        f"{'own process' if args.api == 'process' else 'load generator loop'}; "
        f"rates given: local {args.local_rate:,.0f}/s, cloud {args.cloud_rate:,.0f}/s for "
        f"{args.duration}s; CPU yardstick {python_loop_seconds():.2f}s"
    )
    unequal = [o.name for o in outcomes if o.missing]
    if unequal:
        print(f"performed ≠ fired in: {', '.join(unequal)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--local-rate", type=float, default=1000.0, help="triggers/s, local")
    parser.add_argument("--cloud-rate", type=float, default=500.0, help="triggers/s, cloud")
    parser.add_argument("--modes", default="local,cloud")
    parser.add_argument("--channels", default="webhook,sse")
    parser.add_argument(
        "--api", choices=("process", "loop"), default="process", help="where the API runs"
    )
    parser.add_argument(
        "--drain", type=float, default=30.0, help="give up after this long without an effect"
    )
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    serve_forever(main_async(parser.parse_args()))  # on uvloop, as the runner


if __name__ == "__main__":
    main()
