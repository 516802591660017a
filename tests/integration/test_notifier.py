"""The alert notifier against a fake Telegram Bot API and a webhook receiver, both real HTTP
servers, over the in-memory store and queue on a fake clock: one message when an incident starts,
one when it ends, none in between; one leader among many; a refusing target tried again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from autorunner.alerts import Watch
from autorunner.notifier import (
    Alert,
    Notifier,
    StreamState,
    Target,
    TelegramTarget,
    WebhookTarget,
)
from autorunner.queue.memory import MemoryQueue
from autorunner.records import EffectIntent
from autorunner.store.memory import MemoryStore
from tests.fake_http import Recorded, Reply, ScriptedServer, serving
from tests.fake_telegram import TelegramBot
from tests.helpers import FakeClock

SECRET = "whsec_" + "c2VjcmV0LWZvci1hbGVydHM="


@dataclass
class Rig:
    clock: FakeClock
    store: MemoryStore
    queue: MemoryQueue
    bot: TelegramBot
    hook: ScriptedServer
    http: httpx2.AsyncClient
    bot_url: str
    hook_url: str
    refused: int = 0

    def targets(self) -> list[Target]:
        return [
            TelegramTarget(self.http, api=self.bot_url, token="t0k", chat="42"),
            WebhookTarget(self.http, url=f"{self.hook_url}/alerts", secret=SECRET),
        ]

    def notifier(self, name: str = "a", streams: tuple[str, ...] = ()) -> Notifier:
        return Notifier(
            name=name,
            store=self.store,
            audit=self.store,
            queue=self.queue,
            watch=Watch(lag_threshold=60, window=600, hold_for=60),
            targets=self.targets(),
            refused=lambda: self.refused,
            streams=streams,
            interval=15,
            clock=self.clock,
        )

    def hooks(self) -> list[Recorded]:
        return self.hook.calls("POST", "/alerts")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    bot, hook = TelegramBot(delay=0), ScriptedServer()
    hook.on("POST", "/alerts", Reply(204))
    async with serving(bot) as bot_url, serving(hook) as hook_url, httpx2.AsyncClient() as http:
        yield Rig(
            clock=clock,
            store=MemoryStore(clock=clock),
            queue=MemoryQueue(clock=clock),
            bot=bot,
            hook=hook,
            http=http,
            bot_url=bot_url,
            hook_url=hook_url,
        )


def verified(call: Recorded) -> dict[str, object]:
    """The alert webhook's body, after checking its signature as a receiver would."""
    payload: dict[str, object] = Webhook(SECRET).verify(call.body, call.headers)
    return payload


async def test_lag_past_the_threshold_fires_once_on_each_target_and_resolves_once(
    rig: Rig,
) -> None:
    notifier = rig.notifier()
    await rig.queue.enqueue("e-1")
    assert await notifier.tick() == []
    rig.clock.advance(61)
    await notifier.tick()
    rig.clock.advance(15)
    await notifier.tick()  # still lagging: nothing more is sent
    assert len(rig.bot.messages) == 1
    assert rig.bot.messages[0].startswith("🔴 autorunner: queue lag 61s is over LAG_THRESHOLD")
    fired = verified(rig.hooks()[0])
    assert fired["type"] == "alert.firing"
    assert fired["alert"] == "lag"

    (job,) = await rig.queue.claim("w", limit=1, lease=30, wait=0)
    await rig.queue.ack(job)
    rig.clock.advance(15)
    await notifier.tick()
    assert len(rig.bot.messages) == 2
    assert rig.bot.messages[1].startswith("✅ autorunner resolved after 30s: queue lag")
    resolved = verified(rig.hooks()[1])
    assert resolved["type"] == "alert.resolved"
    assert len(rig.hooks()) == 2


async def test_the_kill_switch_unknown_and_failed_effects_each_fire_and_resolve(rig: Rig) -> None:
    notifier = rig.notifier()
    await notifier.tick()
    await rig.store.set_flag("paused", "maintenance")
    for key, status in (("e-1:order", "unknown"), ("e-2:tell", "failed")):
        kind = "http" if key.endswith("order") else "telegram"
        intent = EffectIntent(
            effect_key=key, event_id=key[:3], step_id=key[4:], kind=kind, params={}
        )
        await rig.store.begin_effect(intent, at_least_once=False, staged=False)
        await rig.store.finish_effect(key, status=status, result={"error": "boom"})  # type: ignore[arg-type]
    fired = await notifier.tick()
    assert sorted(alert.key for alert in fired) == ["adapter:telegram", "paused", "unknown_effects"]
    assert any("kill switch is on (maintenance)" in m for m in rig.bot.messages)

    await rig.store.set_flag("paused", None)
    await rig.store.finish_effect("e-1:order", status="done", result={})
    rig.clock.advance(601)  # the failure is older than the window
    resolved = await notifier.tick()
    assert sorted(a.key for a in resolved) == ["adapter:telegram", "paused", "unknown_effects"]
    assert {a.state for a in resolved} == {"resolved"}
    assert len(rig.bot.messages) == 6


async def test_a_stream_down_longer_than_alert_for_fires_and_its_return_resolves(rig: Rig) -> None:
    notifier = rig.notifier(streams=("q-1",))
    state = StreamState(rig.store, "q-1", clock=rig.clock)
    await state.report("dropped")
    rig.clock.advance(30)
    assert await notifier.tick() == [], "a reconnecting stream is not an incident yet"
    rig.clock.advance(31)
    (fired,) = await notifier.tick()
    assert fired.key == "stream:q-1"
    assert "has been down for 61s (dropped)" in fired.summary
    await state.report("silent")  # still down: the first reason and time stand
    await state.report(None)
    (resolved,) = await notifier.tick()
    assert resolved.state == "resolved"
    assert len(rig.bot.messages) == 2


async def test_a_store_outage_is_announced_while_the_store_is_down_and_resolved_after(
    rig: Rig,
) -> None:
    notifier = rig.notifier()
    await notifier.tick()
    rig.store.available = False
    await notifier.tick()
    rig.clock.advance(61)
    (fired,) = await notifier.tick()
    assert fired.key == "unreachable:store"
    assert rig.bot.messages == [f"🔴 autorunner: {fired.summary}"]
    rig.store.available = True
    rig.clock.advance(15)
    (resolved,) = await notifier.tick()
    assert resolved.key == "unreachable:store"
    assert resolved.state == "resolved"


async def test_webhook_503s_fire_as_a_refusing_ingress_and_resolve_once_they_stop(
    rig: Rig,
) -> None:
    notifier = rig.notifier()
    await notifier.tick()
    rig.refused += 3
    rig.clock.advance(15)
    (fired,) = await notifier.tick()
    assert fired.key == "ingress_refusing"
    rig.clock.advance(61)
    (resolved,) = await notifier.tick()
    assert resolved.state == "resolved"


async def test_two_notifiers_send_each_alert_once_and_a_standby_taking_over_does_not_repeat_it(
    rig: Rig,
) -> None:
    first, second = rig.notifier("a"), rig.notifier("b")
    await rig.store.set_flag("paused", "desk")
    assert len(await first.tick()) == 1
    assert await second.tick() == []
    assert second.leading is False
    assert len(rig.bot.messages) == 1
    rig.clock.advance(46)  # the first one died: its lease lapses
    assert await second.tick() == [], "the incident was announced already"
    assert second.leading is True
    await rig.store.set_flag("paused", None)
    (resolved,) = await second.tick()
    assert resolved.key == "paused"
    assert len(rig.bot.messages) == 2
    assert await first.tick() == []
    assert first.leading is False


async def test_an_alert_a_target_refused_is_sent_on_a_later_tick_and_the_others_only_once(
    rig: Rig,
) -> None:
    rig.hook.on("POST", "/alerts", Reply(503), Reply(204))
    notifier = rig.notifier()
    await rig.store.set_flag("paused", "desk")
    await notifier.tick()
    rig.clock.advance(15)
    await notifier.tick()
    assert len(rig.bot.messages) == 1
    first, second = rig.hooks()
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert orjson.loads(second.body)["alert"] == "paused"
    rig.clock.advance(15)
    await notifier.tick()
    assert len(rig.hooks()) == 2


async def test_a_stream_flag_left_down_by_an_earlier_process_is_cleared_when_it_connects(
    rig: Rig,
) -> None:
    await StreamState(rig.store, "q-1", clock=rig.clock).report("refused: 401")
    restarted = StreamState(rig.store, "q-1", clock=rig.clock)
    await restarted.report(None)
    assert await rig.store.get_flag("stream.down:q-1") is None


async def test_a_store_outage_neither_resolves_nor_repeats_a_stream_incident(rig: Rig) -> None:
    notifier = rig.notifier(streams=("q-1",))
    await StreamState(rig.store, "q-1", clock=rig.clock).report("dropped")
    rig.clock.advance(61)
    (fired,) = await notifier.tick()
    assert fired.key == "stream:q-1"
    rig.store.available = False
    assert await notifier.tick() == [], "unread: the stream's incident stands"
    rig.clock.advance(61)
    during = await notifier.tick()
    assert [a.key for a in during] == ["unreachable:store"]
    rig.store.available = True
    rig.clock.advance(15)
    after = await notifier.tick()
    assert [(a.key, a.state) for a in after] == [("unreachable:store", "resolved")]


async def test_a_leader_coming_back_reads_what_its_successor_announced_and_resolves_nothing_twice(
    rig: Rig,
) -> None:
    first, second = rig.notifier("a"), rig.notifier("b")
    await rig.store.set_flag("paused", "desk")
    await first.tick()
    rig.clock.advance(46)
    await rig.store.set_flag("paused", None)
    (resolved,) = await second.tick()  # b leads now and resolves it
    assert resolved.state == "resolved"
    rig.clock.advance(46)  # b dies in turn; a comes back
    assert await first.tick() == []
    assert first.leading is True
    assert len(rig.bot.messages) == 2


async def test_a_new_leader_does_not_resolve_dead_letter_growth_before_a_whole_window(
    rig: Rig,
) -> None:
    first = rig.notifier("a")
    await first.tick()
    await rig.store.set_flag(
        "alerts.firing", orjson.dumps({"dead_letters": [rig.clock.now, "2 dead"]}).decode()
    )
    second = rig.notifier("b")
    rig.clock.advance(46)  # a died; b takes over and cannot yet see growth
    assert await second.tick() == []
    rig.clock.advance(600)
    (resolved,) = await second.tick()
    assert (resolved.key, resolved.state) == ("dead_letters", "resolved")


async def test_a_target_failing_unexpectedly_keeps_its_alert_and_the_others_still_get_theirs(
    rig: Rig,
) -> None:
    class Broken:
        name = "broken"
        calls = 0

        async def send(self, alert: Alert) -> None:
            Broken.calls += 1
            if Broken.calls == 1:
                raise ValueError("not a URL it can use")

    notifier = rig.notifier()
    notifier._targets = [Broken(), *rig.targets()]
    await rig.store.set_flag("paused", "desk")
    await notifier.tick()
    assert len(rig.bot.messages) == 1
    rig.clock.advance(15)
    await notifier.tick()
    assert Broken.calls == 2
    assert len(rig.bot.messages) == 1
