"""autorunner: the agent runner for Elfa Auto."""

import sys

__version__ = "0.1.0"


def _import_structlog_without_rich() -> None:
    """Import structlog before anything else does, with ``rich`` out of its sight.

    structlog imports rich (and, through it, pygments) whenever it is installed, for console
    renderers and tracebacks the runner never uses (``logs`` renders its own lines and formats
    exceptions as plain text). rich is installed for the CLI's own drawing (typer's help,
    replay's progress bar), which imports it when it draws; kept out of structlog's import, it
    is not loaded at all in an ingress or a worker: ≈ 3.5 MB of RSS each (docs/benchmarks.md,
    issue 16, target 6)."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
    try:
        import structlog  # noqa: F401, PLC0415
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()
