"""The ``autorunner`` command: parse, call, print. Errors are one line and a non-zero exit.

One small module per group of commands; each parses its options, calls ``operations`` (or the
composition root), and prints with ``views``. What a command does lives in ``operations``, so
the console can do the same.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from autorunner.cli import (
    approvals,
    auto,
    dlq,
    effects,
    events,
    operators,
    policy,
    replay,
    send,
    serve,
    simulate,
    tools,
)
from autorunner.errors import AutorunnerError, ConfigError

cli = typer.Typer(
    help="autorunner: the agent runner for Elfa Auto.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"autorunner {importlib.metadata.version('autorunner')}")
        raise typer.Exit


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """autorunner: the agent runner for Elfa Auto."""


cli.command()(serve.serve)
cli.command()(serve.ingress)
cli.command()(serve.worker)
cli.command()(serve.console)
cli.add_typer(events.events_cli, name="events")
cli.add_typer(approvals.approvals_cli, name="approvals")
cli.add_typer(effects.effects_cli, name="effects")
cli.add_typer(dlq.dlq_cli, name="dlq")
cli.add_typer(dlq.rejected_cli, name="rejected")
cli.command()(operators.status)
cli.command()(operators.pause)
cli.command()(operators.resume)
cli.add_typer(policy.policy_cli, name="policy")
cli.command("replay")(replay.replay_command)
cli.add_typer(auto.queries_cli, name="queries")
cli.command("stream")(auto.stream)
cli.add_typer(simulate.simulate_cli, name="simulate")
cli.command("send-test-event")(send.send_test_event)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    try:
        # Without standalone mode, click returns (not raises) the code of a typer.Exit.
        code = cli(args=list(argv) if argv is not None else None, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except (tools.Failure, tools.UsageError, AutorunnerError) as exc:
        print(f"autorunner: error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, ConfigError | tools.UsageError) else 1)
    except typer.Abort:
        print("autorunner: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "format_message"):
            message = exc.format_message()
            if message:  # empty when the help was printed instead
                print(f"autorunner: error: {message}", file=sys.stderr)
            sys.exit(code)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
