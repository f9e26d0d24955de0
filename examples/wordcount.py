"""Streaming ETL with inorder: the top words of each text, counted in worker processes.

An async producer reads the texts chunk by chunk and puts a counting job per chunk, then
a marker when a file ends (parallel-queue's BatchDone). The consumer receives the counts
in reading order, so when a file's marker arrives every chunk of that file has been
merged: it writes that file's top words at once, while later files are still counting.

    python examples/wordcount.py [DATA_DIR] [--workers N] [--chunk-lines N]

The same ETL as a one-line command, a file per input line (each file counted whole in
one worker, results printed in input order):

    ls examples/data/*.txt | inorder map examples/wordcount.py:top_words_of_file
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio

import inorder

HERE = Path(__file__).parent
STOPWORDS = frozenset(
    "a about all an and are as at be been but by could do for from had has have he her "
    "him his i if in into is it its me more my no not now of on one only or out over "
    "said she so some that the their them then there they this to up upon was we were "
    "what when which with would you very like little any before time".split()
)
WORD = re.compile(r"[a-z']+")


def count_words(lines: list[str]) -> collections.Counter[str]:
    """The transform, run in a worker: word counts of one chunk, without stopwords."""
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        counts.update(w for w in WORD.findall(line.lower()) if w not in STOPWORDS)
    return counts


def top_words_of_file(path: str, top: int = 5) -> str:
    """For `inorder map`: one file's top words, as one line of output."""
    with open(path) as text:
        counts = count_words(text.readlines())
    words = ", ".join(f"{word} {n}" for word, n in counts.most_common(top))
    return f"{Path(path).stem}: {words}"


@dataclass(frozen=True)
class FileDone:
    """A marker: every chunk of ``name`` before it has been yielded."""

    name: str
    lines: int


async def produce(pipe: inorder.OrderedPipeline, paths: list[Path], chunk_lines: int) -> None:
    for path in paths:
        lines = 0
        with path.open() as text:
            while True:
                # One thread hop per chunk, not per line: the event loop never blocks on
                # the disk, and reading costs little next to the counting.
                chunk = await anyio.to_thread.run_sync(read_lines, text, chunk_lines)
                if not chunk:
                    break
                lines += len(chunk)
                await pipe.put(count_words, chunk)  # waits while the window is full
        await pipe.put(FileDone(path.stem, lines))
    pipe.close()


def read_lines(text: TextIO, count: int) -> list[str]:
    return list(itertools.islice(text, count))


async def main(paths: list[Path], workers: int | None, chunk_lines: int, top: int) -> None:
    output = HERE / "output"
    started = time.perf_counter()
    chunks = 0
    async with inorder.OrderedPipeline(workers=workers) as pipe:  # window="auto"
        stats = pipe.statistics()
        print(f"inorder: {stats.workers} worker processes, window {stats.window} to start")
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce, pipe, paths, chunk_lines)
            counts: collections.Counter[str] = collections.Counter()
            async for item in pipe:
                if isinstance(item, FileDone):
                    best = counts.most_common(top)
                    (output / f"{item.name}.json").write_text(json.dumps(dict(best), indent=1))
                    words = ", ".join(f"{word} {n}" for word, n in best[:5])
                    print(f"  {item.name:<28} {item.lines:>6} lines  top: {words}")
                    counts = collections.Counter()
                else:
                    counts.update(item)
                    chunks += 1
        stats = pipe.statistics()
    elapsed = time.perf_counter() - started
    print(
        f"done: {len(paths)} files, {chunks} chunks of {chunk_lines} lines, "
        f"{stats.yielded} items in order ({stats.failed} failed) in {elapsed:.2f} s; "
        f"top {top} words per file in {output}/"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=HERE / "data")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--chunk-lines", type=int, default=200)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    texts = sorted(args.data_dir.glob("*.txt"))
    if not texts:
        parser.error(f"no .txt files in {args.data_dir}")
    (HERE / "output").mkdir(exist_ok=True)
    anyio.run(main, texts, args.workers, args.chunk_lines, args.top)
