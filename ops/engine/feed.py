"""Work that is still being listed while a run goes on.

Listing ten thousand instances takes ten DescribeInstances pages and many
seconds; sending to them takes longer still. A Feed pulls the pages on a
thread of its own, so the run loop takes what has arrived without ever
waiting on a page, and the first batches go out while the listing goes on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class Feed(Generic[T]):
    """Pages of items from an iterator, gathered in the background.

    `take()` never blocks. Once it has handed over the last page `done` is
    true; an exception raised by the iterator ends the feed too and is kept
    in `error`, for the run to report after its work in flight is settled.
    """

    def __init__(self, pages: Iterable[list[T]], *, name: str = "ops-feed") -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.done = False
        self.error: BaseException | None = None
        self._held: list[object] = []  # taken by wait(), handed out by take()
        self._thread = threading.Thread(
            target=self._pull, args=(iter(pages),), name=name, daemon=True
        )
        self._thread.start()

    def _pull(self, pages: Iterator[list[T]]) -> None:
        try:
            for page in pages:
                if self._stop.is_set():
                    return
                self._queue.put(page)
        except Exception as exc:  # handed to the run loop, which reports it
            self._queue.put(exc)
        finally:
            self._queue.put(_END)

    def take(self) -> list[list[T]]:
        """The pages that arrived since the last call."""
        pages: list[list[T]] = []
        while not self.done:
            if self._held:
                item = self._held.pop(0)
            else:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if item is _END:
                self.done = True
            elif isinstance(item, BaseException):
                self.error = item
            else:
                page: list[T] = item  # type: ignore[assignment]
                pages.append(page)
        return pages

    def stop(self) -> None:
        """Take no more pages: the page being fetched is the last one asked for."""
        self._stop.set()

    def wait(self, timeout: float) -> None:
        """Block until a page arrives, the feed ends or the timeout passes."""
        if self.done or self._held:
            return
        try:
            self._held.append(self._queue.get(timeout=timeout))
        except queue.Empty:
            return
