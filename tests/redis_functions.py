"""Functions the Redis tests run in workers, and the consumer script they kill."""

from __future__ import annotations

import sys
import time
from typing import Any


def shout(text: str) -> str:
    return text.upper() + "!"


def fail_on_b(text: str) -> str:
    if text == "b":
        raise ValueError("b is not welcome")
    return text


def slow_double(item: Any) -> Any:
    time.sleep(0.002)
    return {"n": item["n"] * 2}


def jittery(text: str) -> str:
    """A little work, more for some entries: a consumer killed at any moment is caught
    with items in every stage."""
    time.sleep(0.0005 if int(text) % 7 else 0.003)
    return f"<{text}>"


async def consume(
    url: str, source_key: str, out: str, consumer: str, claim_idle: str, kind: str = "stream"
) -> None:
    import redis

    import inorder.redis

    client = redis.Redis.from_url(url)
    source: Any
    sink: Any
    if kind == "list":
        source = inorder.redis.ListSource(client, source_key, consumer)
        sink = inorder.redis.ListSink(out)
    else:
        source = inorder.redis.StreamSource(
            client, source_key, "g", consumer, claim_idle=float(claim_idle)
        )
        sink = inorder.redis.StreamSink(out)
    await inorder.redis.run(jittery, source, sink, workers=2, window=64)


if __name__ == "__main__":
    import anyio

    anyio.run(consume, *sys.argv[1:])
