"""Prometheus metrics, one registry per runtime (no global state, so tests can run many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from autorunner.queue.base import QueueStats
from autorunner.records import RunRecord, StoreStats

ACK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Up to past the default JOB_TIMEOUT (30 s) and a route's longer limits."""
DECISION_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters for the data path; gauges refreshed from the queue and store on scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "autorunner_events_received", "Deliveries received", ["channel"], registry=r
        )
        self.rejected = Counter(
            "autorunner_events_rejected", "Deliveries refused", ["channel", "reason"], registry=r
        )
        self.duplicates = Counter(
            "autorunner_events_duplicate", "Duplicate deliveries", ["channel"], registry=r
        )
        self.enqueued = Counter(
            "autorunner_events_enqueued", "Events stored and queued", ["channel"], registry=r
        )
        self.unavailable = Counter(
            "autorunner_store_unavailable",
            "Deliveries answered 503 (store or queue down)",
            registry=r,
        )
        self.enqueue_deferred = Counter(
            "autorunner_enqueue_deferred",
            "Events stored but not queued (queue down); the sweeper queues them later",
            registry=r,
        )
        self.processed = Counter(
            "autorunner_jobs_processed", "Events finished", ["outcome"], registry=r
        )
        self.retried = Counter("autorunner_jobs_retried", "Attempts scheduled again", registry=r)
        self.dead_lettered = Counter(
            "autorunner_jobs_dead_lettered", "Events dead-lettered", registry=r
        )
        self.effects = Counter(
            "autorunner_effects", "Effects by kind and status", ["kind", "status"], registry=r
        )
        self.sse_connections = Counter(
            "autorunner_sse_connections", "SSE streams opened", registry=r
        )
        self.reconciliations = Counter(
            "autorunner_reconciliations", "Gap-filling polls done", registry=r
        )
        self.swept = Counter(
            "autorunner_sweeper_requeued", "Stored events re-enqueued by the sweeper", registry=r
        )
        self.http_refused = Counter(
            "autorunner_http_refused",
            "Clients refused by the HTTP server (timeouts, header limits, connection limit)",
            ["reason"],
            registry=r,
        )
        self.ack_latency = Histogram(
            "autorunner_ack_latency_seconds",
            "Webhook receipt to acknowledgement",
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.job_seconds = Histogram(
            "autorunner_job_seconds",
            "One attempt, end to end",
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.decision_seconds = Histogram(
            "autorunner_decision_seconds",
            "Time a decider took to decide (a pinned decision reused is not counted)",
            ["decider"],
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.llm_spend = Counter(
            "autorunner_llm_spend_usd",
            "What the model's decisions cost, priced from the provider's reported usage",
            ["route"],
            registry=r,
        )
        self.decision_tokens = Counter(
            "autorunner_decision_tokens",
            "Model tokens spent deciding, by direction (input, output)",
            ["decider", "type"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "autorunner_queue_depth", "Jobs waiting (ready or delayed)", registry=r
        )
        self.queue_in_flight = Gauge(
            "autorunner_queue_in_flight", "Jobs claimed and leased", registry=r
        )
        self.oldest_pending = Gauge(
            "autorunner_queue_oldest_pending_seconds", "Age of the oldest ready job", registry=r
        )
        self.dead_letters = Gauge(
            "autorunner_dead_letters", "Events in the dead letters", registry=r
        )
        self.effects_unknown = Gauge(
            "autorunner_effects_unknown",
            "Effects whose request may have reached the remote with no known outcome:"
            " each waits for an operator (autorunner effects resolve)",
            registry=r,
        )
        self.rejected_stored = Gauge(
            "autorunner_rejected_stored", "Authentic deliveries kept as rejected", registry=r
        )

    def observe_run(self, record: RunRecord) -> None:
        """Count what one attempt did: its effects, and its decision when it made one."""
        for effect in record.effects:
            self.effects.labels(effect["kind"], effect["status"]).inc()
        decision, took = record.decision, record.timings_ms.get("decide")
        if decision is None or decision.get("reused") or took is None:
            return
        decider = str(decision.get("decider", "unknown"))
        self.decision_seconds.labels(decider).observe(took / 1000)
        usage = (decision.get("trace") or {}).get("usage") or {}
        for kind in ("input", "output"):
            if tokens := usage.get(f"{kind}_tokens"):
                self.decision_tokens.labels(decider, kind).inc(tokens)

    def observe_stats(self, queue: QueueStats, store: StoreStats) -> None:
        self.queue_depth.set(queue.depth)
        self.queue_in_flight.set(queue.in_flight)
        self.oldest_pending.set(queue.oldest_ready_age or 0.0)
        self.dead_letters.set(store.counts.get("dead", 0))
        self.rejected_stored.set(store.rejected)
        self.effects_unknown.set(store.unknown_effects)

    def render(self) -> bytes:
        return generate_latest(self.registry)
