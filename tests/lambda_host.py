"""A stand-in for the AWS Lambda runtime, for tests and the cold-start benchmark: one process
(one execution environment) that imports ``autorunner.serverless`` and invokes its handlers, one
at a time, as the runtime would:

    python -m tests.lambda_host    # reads {"handler": NAME, "event": {...}} lines on stdin,
                                   # writes {"result": ...} or {"error": ...} lines on stdout
"""

from __future__ import annotations

import os
import sys
import time

import orjson

# Replies go to the real stdout; anything else written there (logs) goes to stderr.
replies = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
started = time.perf_counter()
from autorunner import serverless  # noqa: E402 - timed: the import is part of a cold start

imported = time.perf_counter() - started


def main() -> None:
    handlers = {
        "ingress": serverless.ingress,
        "worker": serverless.worker,
        "sweeper": serverless.sweeper,
    }
    print(
        orjson.dumps({"ready": True, "import_seconds": imported}).decode(), file=replies, flush=True
    )
    for line in sys.stdin:
        request = orjson.loads(line)
        began = time.perf_counter()
        reply: dict[str, object]
        try:
            result = handlers[request["handler"]](request["event"], None)
        except Exception as exc:  # reported to the test, as Lambda reports it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            reply = {"result": result}
        reply["seconds"] = time.perf_counter() - began
        print(orjson.dumps(reply).decode(), file=replies, flush=True)


if __name__ == "__main__":
    main()
