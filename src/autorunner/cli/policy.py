"""``autorunner policy …``: check a policy file, and see what it would do with an event."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from autorunner import app as composition
from autorunner import deciding, facts, operations, views
from autorunner.adapters import build_adapters
from autorunner.adapters.base import valuers
from autorunner.backends import Backends
from autorunner.cli import tools
from autorunner.config import Settings
from autorunner.context import AutoContext
from autorunner.errors import InvalidEvent
from autorunner.events import Event, derived_event_id, normalize_webhook, parse_json_object
from autorunner.policy import Policy
from autorunner.policy_file import load_policy
from autorunner.replay import Redecided, decide_event, redecide

policy_cli = typer.Typer(
    help="Check a policy file, and see what it would do with an event (no effects).",
    no_args_is_help=True,
)


@policy_cli.command("check")
def check_file(file: Path, as_json: tools.JsonFlag = False) -> None:
    """Load FILE as serve would: one line naming file, route and field on a mistake (exit 2);
    warnings for old spellings and for allowed kinds with no adapter configured here."""
    settings = tools.settings()
    policy = load_policy(file)
    deciding.check_deciders(policy, deciding.deciders(settings))
    warnings = tools.run(lambda: _warnings(settings, policy))
    if as_json:
        tools.print_json(
            {
                "ok": True,
                "policy_hash": policy.hash,
                "routes": [r.name for r in policy.routes],
                "warnings": warnings,
            }
        )
        return
    print(f"{file}: ok, {len(policy.routes)} route(s) and the default, policy {policy.hash}")
    for warning in warnings:
        print(f"warning: {warning}")


async def _warnings(settings: Settings, policy: Policy) -> list[str]:
    async with composition.http_client() as http:
        return composition.policy_warnings(policy, build_adapters(settings, http))


@policy_cli.command("test")
def try_event(
    file: Path,
    event: Annotated[
        str | None, typer.Option("--event", help="A stored event (any of its ids).")
    ] = None,
    body: Annotated[
        Path | None, typer.Option(help="A webhook body (JSON, any shape Auto sends).")
    ] = None,
    as_json: tools.JsonFlag = False,
) -> None:
    """What route, rule, envelope, actions and verdict an event would get under FILE; nothing
    is executed or recorded. A stored event is decided on the facts and context its last run
    recorded; a body on Auto's record of its query when Elfa credentials are set."""
    if (event is None) == (body is None):
        raise tools.UsageError("give exactly one of --event ID or --body FILE")
    settings = tools.settings()
    policy = load_policy(file)
    deciders = deciding.deciders(settings)

    async def stored(backends: Backends) -> Redecided:
        assert event is not None  # noqa: S101 - checked above
        detail = await operations.find(backends, event)
        kinds = await composition.valuation(settings)
        counted = deciding.budgeted(deciders, settings, backends.store)
        return await redecide(detail, policy, counted, valuers=kinds)

    async def given() -> Redecided:
        assert body is not None  # noqa: S101 - checked above
        delivered = _event_from(body)
        async with composition.http_client() as http:
            kinds = valuers(build_adapters(settings, http))
            auto = composition.build_auto_client(settings, http)
            if auto is None:
                return await decide_event(delivered, {}, policy, deciders, valuers=kinds)
            source = AutoContext(auto, cache_seconds=settings.context_cache_seconds)
            resolved = facts.resolve(delivered, await source.query(delivered))
            route = policy.route_for(resolved)
            context = await source.fetch(resolved, route.context)
            return await decide_event(resolved, context, policy, deciders, valuers=kinds)

    result = (
        tools.run(lambda: tools.with_backends(settings, stored))
        if event is not None
        else tools.run(given)
    )
    if as_json:
        tools.print_json(_as_dict(result, policy))
    else:
        tools.lines(_lines(result, policy))


def _event_from(path: Path) -> Event:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise tools.UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        payload = parse_json_object(raw)
        return normalize_webhook(
            payload,
            delivery_id=None,
            fallback_id=lambda: derived_event_id(str(int(time.time())).encode(), raw),
        )
    except InvalidEvent as exc:
        raise tools.UsageError(f"{path}: {exc}") from exc


def _as_dict(result: Redecided, policy: Policy) -> dict[str, Any]:
    return {
        "policy_hash": policy.hash,
        "route": result.route,
        "envelope": result.envelope.to_dict(),
        "decision": None if result.decision is None else result.decision.to_dict(),
        "verdict": result.verdict.to_dict(),
    }


def _lines(result: Redecided, policy: Policy) -> list[str]:
    trigger = result.envelope.trigger
    decision = result.decision
    lines = [
        f"route      {result.route}   policy {policy.hash}   (dry run: nothing executed)",
        f"trigger    {trigger.event_type}, status {trigger.status},"
        f" symbol {trigger.symbol or '-'}, title {views.text(trigger.title or '-')}",
        f"envelope   {orjson.dumps(result.envelope.to_dict()).decode()}",
    ]
    if decision is None:
        lines.append(f"decided by -: {result.verdict.refused}")
        return lines
    lines.append(f"decided by {decision.version}: {decision.rationale}")
    lines += [
        f"action     {a.step_id} ({a.kind}) {views.text(a.params, 200)}" for a in decision.actions
    ] or ["action     none"]
    allowed = result.verdict.allowed
    lines.append(
        "allowed    " + (", ".join(f"{a.step_id} ({a.kind})" for a in allowed) or "nothing")
    )
    lines += [
        f"denied     {d.action.step_id} ({d.action.kind}): {d.reason}"
        for d in result.verdict.denied
    ]
    return lines
