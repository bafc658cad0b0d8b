"""A bound on the decrypted message bytes that postveil-portal keeps in memory at once.

Each page view, message download and attachment download decrypts the whole message
in memory. Without a bound, one signed-in recipient could send many concurrent
downloads of a large message and push the daemon out of memory. Each such read
therefore reserves bytes from a :class:`ReadBudget` before it decrypts and releases
them once its response is sent. A read that does not get its bytes within the wait
time is rejected, and the portal answers 503.

Waiting reads are granted in arrival order, so a large read is not passed over
forever by small ones. A link has at most ``per_link`` reads at once, so one recipient's
concurrent requests cannot take the whole budget while others wait. A read that waits
only for its link's turn does not hold up the reads of other links.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

READ_COPIES = 3.25
"""Copies of a message that one read keeps at its peak in the daemon, measured with
tracemalloc (docs/benchmarks.md). Decrypting keeps three: the encrypted file, the
ciphertext sliced from it, and the plaintext. Starting a parse keeps the plaintext
and its pickled copy for the parsing process, in a buffer that grows by an eighth at
a time. An attachment download keeps the plaintext, the part's content as the pipe
delivers it, and the content unpickled from that."""

READ_OVERHEAD = 16 * 1024 * 1024
"""Bytes a read reserves beyond READ_COPIES times the message's size. They cover the
chunks of a download in flight and building the message page from up to 200,000
characters of text (MAX_PAGE_TEXT in reading.py). The page took 11.4 MiB at its peak
for text that escaping makes five times longer."""

DEFAULT_BUDGET_READS = 2
"""Reads of a message of the largest size that the default budget allows at once."""


def read_cost(size: int) -> int:
    """Return the bytes a read of a message of ``size`` bytes reserves."""
    return math.ceil(READ_COPIES * size) + READ_OVERHEAD


class BudgetExhausted(Exception):
    """The read did not get its bytes, or its link's turn, within the wait time."""


@dataclass
class _Waiter:
    link: str
    size: int
    granted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ReadBudget:
    """Bytes that concurrent reads reserve, with a cap on the reads of one link.

    Used from one event loop only; it takes no locks.
    """

    def __init__(self, capacity: int, *, per_link: int, wait: float) -> None:
        if capacity <= 0 or per_link <= 0:
            raise ValueError("capacity and per_link must be greater than zero")
        self.capacity = capacity
        self.per_link = per_link
        self.wait = wait
        """Seconds a read waits for its bytes before :class:`BudgetExhausted`."""
        self.reserved = 0
        """Bytes reserved by the reads in progress."""
        self._reads: dict[str, int] = {}
        self._waiters: deque[_Waiter] = deque()

    def reads_of(self, link: str) -> int:
        """Return how many reads of ``link`` hold a reservation."""
        return self._reads.get(link, 0)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def reserve(self, link: str, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes for a read of ``link`` for the duration of the block.

        Raises ValueError when ``size`` exceeds the capacity (the configuration check
        keeps every read within it) and BudgetExhausted after waiting ``wait``
        seconds in vain. The bytes are released when the block ends, also by an
        exception or a cancellation.
        """
        if size > self.capacity:
            raise ValueError(f"a read of {size} bytes exceeds the budget of {self.capacity}")
        await self._acquire(link, size)
        try:
            yield
        finally:
            self._release(link, size)

    async def _acquire(self, link: str, size: int) -> None:
        waiter = _Waiter(link, size)
        self._waiters.append(waiter)
        self._grant()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), self.wait)
        except TimeoutError:
            self._withdraw(waiter)
            raise BudgetExhausted(f"no room in the read budget within {self.wait:g}s") from None
        except asyncio.CancelledError:
            self._withdraw(waiter)
            raise

    def _withdraw(self, waiter: _Waiter) -> None:
        if waiter.granted.done():
            # Granted in the same moment as the timeout or cancellation: give the
            # bytes back, because the caller will not release them.
            self._release(waiter.link, waiter.size)
            return
        waiter.granted.cancel()
        self._waiters.remove(waiter)
        # A large read at the head that gives up may let smaller ones in.
        self._grant()

    def _release(self, link: str, size: int) -> None:
        self.reserved -= size
        remaining = self._reads[link] - 1
        if remaining:
            self._reads[link] = remaining
        else:
            del self._reads[link]
        self._grant()

    def _grant(self) -> None:
        """Grant waiting reads in arrival order. A read whose link already has
        ``per_link`` reads is passed over. The first other read that does not fit
        stops the scan, so later, smaller reads do not overtake it."""
        for waiter in list(self._waiters):
            if self.reads_of(waiter.link) >= self.per_link:
                continue
            if self.reserved + waiter.size > self.capacity:
                break
            self._waiters.remove(waiter)
            self.reserved += waiter.size
            self._reads[waiter.link] = self.reads_of(waiter.link) + 1
            waiter.granted.set_result(None)
