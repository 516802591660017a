"""Throw-away queue names on the shared Redis: ``fresh_queue`` yields a new name and deletes its
keys (``{name}:…``, nothing else) afterwards, so a benchmark leaves no stream behind."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import redis


@contextlib.contextmanager
def fresh_queue(url: str | None) -> Iterator[str]:
    """A new queue name; with ``url`` (a Redis), its keys there are deleted afterwards."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        if url is not None:
            client = redis.Redis.from_url(url)
            try:
                keys = list(client.scan_iter(match=f"{{{name}}}:*", count=1000))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()
