"""Records the contract suites build: a finished run, an effect intent, stored events."""

from __future__ import annotations

from autorunner.records import EffectIntent, RunRecord
from autorunner.store.base import StoreBackend
from tests.helpers import make_event, raw_delivery


def run(
    event_id: str, attempt: int = 1, outcome: str = "done", error: str | None = None
) -> RunRecord:
    return RunRecord(
        event_id=event_id,
        attempt=attempt,
        outcome=outcome,  # type: ignore[arg-type]
        started_at=0.0,
        finished_at=1.0,
        error=error,
    )


def intent(event_id: str = "evt-1", step: str = "notify") -> EffectIntent:
    return EffectIntent(
        effect_key=f"{event_id}:{step}",
        event_id=event_id,
        step_id=step,
        kind="notify",
        params={"text": "hi"},
    )


async def stored_events(store: StoreBackend, count: int) -> list[str]:
    """The ids of ``count`` new events, stored one by one: e00, e01, ..."""
    ids = [f"e{n:02}" for n in range(count)]
    for event_id in ids:
        await store.insert_event(make_event(event_id), raw_delivery())
    return ids


async def leased_events(store: StoreBackend, count: int) -> list[str]:
    """``stored_events``, each then leased by worker ``w`` (generation 1)."""
    ids = await stored_events(store, count)
    for event_id in ids:
        await store.acquire(event_id, owner="w", lease=30)
    return ids
