"""``autorunner replay``: re-decide stored events under a policy in dry-run, and what changes."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from autorunner import app as composition
from autorunner import cli_events, clitools
from autorunner.adapters.base import valuers
from autorunner.backends import Backends
from autorunner.errors import ConfigError
from autorunner.policy import Policy
from autorunner.replay import replay


def replay_command(
    event_id: Annotated[
        str | None, typer.Argument(help="One stored event to decide again.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Policy file (default: RUNNER_POLICY or built-in).")
    ] = None,
    since: cli_events.Since = None,
    until: cli_events.Until = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 100_000,
    decider: Annotated[
        str | None, typer.Option(help="Decide every route with this decider (rules, llm) instead.")
    ] = None,
    as_json: clitools.JsonFlag = False,
) -> None:
    """Re-decide stored events under a policy in dry-run and show what changes; never executes an effect."""
    if (event_id is None) == (since is None):
        raise clitools.UsageError("give exactly one of EVENT_ID or --since")
    window = clitools.window(since, until)
    count = clitools.limit(limit)
    settings = clitools.settings()
    chosen = composition.policy_for(settings, str(policy) if policy else None)
    deciders = composition.deciders(settings)
    if decider is not None:
        if decider not in deciders:
            raise ConfigError(
                f"decider {decider!r} is not available here (configured: {', '.join(sorted(deciders))})"
            )
        chosen = Policy(
            routes=tuple(dataclasses.replace(r, decider=decider) for r in chosen.routes),
            default=dataclasses.replace(chosen.default, decider=decider),
        )

    async def one(backends: Backends) -> Any:
        assert event_id is not None  # noqa: S101 - checked above
        detail = await cli_events.find(backends, event_id)
        async with composition.http_client() as http:
            kinds = valuers(composition.build_adapters(settings, http))
            return await replay(detail, chosen, deciders, valuers=kinds)

    if event_id is not None:
        result = clitools.run(lambda: clitools.with_backends(settings, one))
        if as_json:
            clitools.print_json(result.to_dict())
        else:
            print(
                f"{result.event_id}: {result.change} (route {result.route}, policy {chosen.hash})"
            )
            print(f"  before: {_verdict_line(result.before)}")
            print(f"  after:  {_verdict_line(result.after)}")
        return

    async def many(backends: Backends) -> dict[str, Any]:
        events = await backends.store.list_events(limit=count, since=window[0], until=window[1])
        results = []
        async with composition.http_client() as http:
            kinds = valuers(composition.build_adapters(settings, http))
        with _progress(len(events), enabled=not as_json) as advance:
            for summary in reversed(events):
                detail = await backends.store.get_event(summary.event_id)
                if detail is not None:
                    results.append(await replay(detail, chosen, deciders, valuers=kinds))
                advance()
        counts = {
            c: sum(r.change == c for r in results)
            for c in ("unchanged", "changed", "newly_denied", "newly_allowed", "no_record")
        }
        return {
            "policy_hash": chosen.hash,
            "events": len(results),
            **counts,
            "differences": [
                r.to_dict() for r in results if r.change not in ("unchanged", "no_record")
            ],
        }

    summary = clitools.run(lambda: clitools.with_backends(settings, many))
    if as_json:
        clitools.print_json(summary)
        return
    print(
        f"replayed {summary['events']} event(s) under policy {summary['policy_hash']}: "
        f"{summary['unchanged']} unchanged, {summary['changed']} changed, "
        f"{summary['newly_denied']} newly denied, {summary['newly_allowed']} newly allowed, "
        f"{summary['no_record']} never decided"
    )
    for item in summary["differences"]:
        print(
            f"  {item['event_id']}: {item['change']}  before: {_verdict_line(item['before'])}  after: {_verdict_line(item['after'])}"
        )


def _verdict_line(verdict: dict[str, Any] | None) -> str:
    if verdict is None:
        return "(no recorded decision)"
    allowed = (
        ", ".join(f"{a['step_id']}:{a['kind']}" for a in verdict.get("allowed", [])) or "nothing"
    )
    denied = "; ".join(
        f"{d['action']['step_id']} ({d['reason']})" for d in verdict.get("denied", [])
    )
    return f"allowed {allowed}" + (f"; denied {denied}" if denied else "")


@contextlib.contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.progress import Progress  # noqa: PLC0415 - people only

    with Progress(transient=True) as progress:
        task = progress.add_task("replaying", total=total)
        yield lambda: progress.advance(task)
