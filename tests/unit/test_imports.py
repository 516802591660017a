"""What a runner process loads: an ingress or a worker leaves out what only people use."""

import subprocess
import sys

RUNTIME = (
    "autorunner.cli",
    "autorunner.ingress",
    "autorunner.worker",
    "autorunner.app",
    "autorunner.store.postgres",
    "autorunner.queue.redis",
)


def loaded_after(*modules: str, then: str = "") -> set[str]:
    """The top-level packages in ``sys.modules`` of a fresh interpreter that imported ``modules``
    (and ran ``then``)."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"{then}\n"
        "print(' '.join(sorted({m.split('.')[0] for m, v in sys.modules.items() if v})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_runtime_does_not_load_rich_or_pygments_through_structlog() -> None:
    loaded = loaded_after(*RUNTIME)
    assert "structlog" in loaded
    assert not {"rich", "pygments"} & loaded


def test_rich_still_imports_where_the_cli_draws() -> None:
    loaded = loaded_after(*RUNTIME, then="from rich.progress import Progress")
    assert "rich" in loaded


def test_structlog_imported_first_elsewhere_is_left_alone() -> None:
    # A host application that imported structlog (with rich) before us keeps its own setup.
    loaded = loaded_after("structlog", *RUNTIME)
    assert "rich" in loaded
