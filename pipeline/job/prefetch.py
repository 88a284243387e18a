"""Run a generator a few items ahead of its consumer, in a background thread.

A streamed batch checks its next chunk of rows while the database takes the previous one:
the consumer waits inside py4j for the JVM, which does not hold Python's GIL.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_END = object()


@contextmanager
def prefetched(items: Iterable[T], depth: int = 2, name: str = "prefetch"
               ) -> Iterator[Iterator[T]]:
    """An iterator over `items`, which a thread produces up to `depth` items ahead.

    An exception in the producer is raised in the consumer. Leaving the block stops the
    producer (after the item it is working on) and waits for it.
    """
    handoff: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except Exception as e:  # noqa: BLE001 - handed over to the consumer
            put((_END, e))

    def consume() -> Iterator[T]:
        while True:
            item, error = handoff.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()
