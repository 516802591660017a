"""Readings into incidents: what fires, what waits, what is remembered."""

from __future__ import annotations

from autorunner.alerts import Health, Watch


def watch() -> Watch:
    return Watch(lag_threshold=60, window=600, hold_for=60)


def test_dead_letters_that_were_there_before_the_watch_began_are_not_news() -> None:
    w = watch()
    assert w.incidents(Health(at=0, dead=7)) == {}
    assert w.incidents(Health(at=15, dead=7)) == {}


def test_dead_letters_growing_fire_until_the_window_has_passed_without_growth() -> None:
    w = watch()
    w.incidents(Health(at=0, dead=7))
    grown = w.incidents(Health(at=15, dead=9))
    assert grown["dead_letters"].startswith("2 event(s) dead-lettered in the last 10m (9 in")
    assert "dead_letters" in w.incidents(Health(at=600, dead=9))
    assert w.incidents(Health(at=616, dead=9)) == {}


def test_what_a_reading_could_not_read_keeps_its_incidents_as_they_were() -> None:
    w = watch()
    firing = w.incidents(Health(at=0, lag=90, dead=0, unknown_effects=2, paused="x", failing={}))
    assert set(firing) == {"lag", "unknown_effects", "paused"}
    outage = {"store": (0.0, "down")}
    during = w.incidents(Health(at=61, lag=0, unreachable=outage))
    assert set(during) == {"unknown_effects", "paused", "unreachable:store"}, (
        "lag was read (and is fine); the store's incidents neither fire nor resolve unread"
    )


def test_each_failing_adapter_is_its_own_incident() -> None:
    found = watch().incidents(Health(at=0, failing={"http": 2, "telegram": 1}))
    assert set(found) == {"adapter:http", "adapter:telegram"}
    assert found["adapter:http"] == "the http adapter failed 2 effect(s) in the last 10m"
