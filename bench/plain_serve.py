"""``autorunner serve`` on uvicorn's own httptools protocol, without the runner's HTTP limits.

Only for ``bench.connections``, to measure what the limits cost and what a server without them
holds for slow clients; settings come from the environment as for ``autorunner serve``.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from autorunner import logs
from autorunner.config import load_settings
from autorunner.service_loop import run_service
from autorunner.serving import serve

if __name__ == "__main__":
    settings = load_settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    run_service(serve(settings, http=HttpToolsProtocol))
