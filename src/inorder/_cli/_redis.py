"""``inorder map`` with a Redis stream (or list) as its input and another as its output.

    inorder map MODULE:FUNC 'redis://host:6379/0?stream=in&group=etl' \\
        --output 'redis://host:6379/0?stream=out' [--follow]
    inorder map MODULE:FUNC 'redis://host:6379/0?list=jobs' --output 'redis://...?list=done'

The URLs are redis-py's (``rediss://`` for TLS, ``user:password@``), with inorder's own
query parameters taken out: ``stream`` or ``list`` (on each URL, in any combination),
``group`` (the input's consumer group, ``inorder`` by default), ``consumer`` (the host
name by default) and ``claim_idle`` (seconds). The work is ``inorder.redis.run``: one
output entry per input entry, in order, each written with its input's acknowledgement.
"""

from __future__ import annotations

import argparse
import signal
import sys
import urllib.parse
from typing import Any

import anyio

from ._common import EXIT_FAILED, EXIT_OK, UsageError

SCHEMES = ("redis", "rediss", "unix")
_OURS = ("stream", "group", "consumer", "claim_idle", "list")


def is_redis_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme in SCHEMES and "://" in text


def shown(url: str) -> str:
    """``url`` as messages show it: its password, if any, replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    netloc = f"{name}:***@{host}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse(url: str, *, role: str) -> tuple[str, dict[str, str]]:
    """``url`` without inorder's parameters (for redis-py), and those parameters."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in _OURS}
    theirs = [(key, value) for key, value in query if key not in _OURS]
    if bool(ours.get("stream")) == bool(ours.get("list")):
        raise UsageError(
            f"{role} {shown(url)!r} must name one stream (?stream=NAME) or one list (?list=NAME)"
        )
    plain = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(theirs), parts.fragment)
    )
    return plain, ours


def connect(url: str) -> Any:
    try:
        import redis
    except ImportError:
        raise UsageError(
            "a Redis URL needs the 'redis' package: pip install 'inorder[redis]'"
        ) from None
    try:
        return redis.Redis.from_url(url)
    except ValueError as exc:
        raise UsageError(f"bad Redis URL {shown(url)!r}: {exc}") from None


async def run_stream(
    fn: Any, args: argparse.Namespace, source_url: str, options: dict[str, Any]
) -> int:
    """The whole command: stops cleanly on SIGTERM (and Ctrl-C), acknowledging only
    what was written."""
    import redis

    import inorder.redis

    in_url, in_params = parse(source_url, role="input")
    if args.output is None or not is_redis_url(args.output):
        raise UsageError(
            "a Redis input needs a Redis output: --output 'redis://HOST/DB?stream=NAME'"
        )
    out_url, out_params = parse(args.output, role="--output")
    if out_url != in_url:
        # Outputs and acknowledgements are written by one script: one server, one database.
        raise UsageError("--output must name the same Redis server and database as the input")
    in_client = connect(in_url)
    source: inorder.redis.StreamSource | inorder.redis.ListSource
    sink = (
        inorder.redis.ListSink(out_params["list"])
        if "list" in out_params
        else inorder.redis.StreamSink(out_params["stream"])
    )
    if "list" in in_params:
        source = inorder.redis.ListSource(
            in_client, in_params["list"], in_params.get("consumer") or None, follow=args.follow
        )
    else:
        source = inorder.redis.StreamSource(
            in_client,
            in_params["stream"],
            in_params.get("group", "inorder"),
            in_params.get("consumer") or None,
            follow=args.follow,
            claim_idle=float(in_params.get("claim_idle", 60.0)),
        )
    try:
        await anyio.to_thread.run_sync(in_client.ping)
    except redis.ConnectionError as exc:  # refused, unknown host, bad password, TLS, ...
        in_client.close()
        # An OSError: main() reports it in one line, with status 1.
        raise ConnectionError(f"cannot reach Redis at {shown(in_url)}: {exc}") from None

    def report(entry_id: str, error: BaseException) -> None:
        print(f"inorder map: entry {entry_id}: {type(error).__name__}: {error}", file=sys.stderr)

    stopped = False
    status = EXIT_OK
    lost: BaseException | None = None
    async with anyio.create_task_group() as tasks:

        async def stop_on_signal() -> None:
            nonlocal stopped
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    stopped = True
                    tasks.cancel_scope.cancel()

        if sys.platform != "win32":  # no signal receivers there: Ctrl-C stops it
            tasks.start_soon(stop_on_signal)
        try:
            await inorder.redis.run(
                fn,
                source,
                sink,
                format="json" if args.jsonl or args.input_format == "jsonl" else "text",
                on_error=args.on_error,
                on_failure=report,
                **options,
            )
        except inorder.redis.EntryFailed:
            status = EXIT_FAILED
        except redis.ConnectionError as exc:
            lost = exc  # raised below: raised here, the task group would wrap it
        finally:
            tasks.cancel_scope.cancel()
            in_client.close()
    if lost is not None:
        # An OSError: main() reports it in one line, with status 1.
        raise ConnectionError(
            f"lost the connection to Redis ({lost}); entries not written stay pending "
            "and are processed first when the command runs again"
        )
    if stopped:
        print("inorder map: stopped (SIGTERM); what was written is acknowledged", file=sys.stderr)
    # As with files: failures written or skipped under --on-error return/skip end with 0.
    return status
