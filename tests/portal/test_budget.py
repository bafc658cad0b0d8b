"""The read budget's accounting, order and waits, without the web server."""

from __future__ import annotations

import asyncio

import pytest

from postveil.portal.budget import BudgetExhausted, ReadBudget


async def test_reads_within_capacity_run_together() -> None:
    budget = ReadBudget(100, per_link=1, wait=1.0)
    async with budget.reserve("a", 60), budget.reserve("b", 40):
        assert budget.reserved == 100
        assert budget.reads_of("a") == 1
    assert budget.reserved == 0
    assert budget.reads_of("a") == 0


async def test_read_without_room_times_out() -> None:
    budget = ReadBudget(100, per_link=2, wait=0.1)
    async with budget.reserve("a", 60):
        with pytest.raises(BudgetExhausted, match="within 0.1s"):
            async with budget.reserve("b", 50):
                pass
        assert budget.reserved == 60
        assert budget.waiting == 0
    assert budget.reserved == 0


async def test_larger_read_is_not_overtaken() -> None:
    budget = ReadBudget(100, per_link=2, wait=1.0)
    order: list[str] = []

    async def read(link: str, size: int) -> None:
        async with budget.reserve(link, size):
            order.append(link)
            await asyncio.sleep(0.05)

    async with budget.reserve("first", 60):
        large = asyncio.create_task(read("large", 80))
        await asyncio.sleep(0.01)
        small = asyncio.create_task(read("small", 10))
        await asyncio.sleep(0.01)
        # The small read would fit now, but the large one came first.
        assert order == []
    await asyncio.gather(large, small)
    assert order == ["large", "small"]


async def test_link_at_its_limit_does_not_block_others() -> None:
    budget = ReadBudget(100, per_link=1, wait=1.0)
    async with budget.reserve("busy", 10):
        waiting = asyncio.create_task(budget.reserve("busy", 10).__aenter__())
        await asyncio.sleep(0.01)
        async with budget.reserve("other", 10):
            assert budget.reads_of("other") == 1
            assert not waiting.done()
    await waiting
    assert budget.reads_of("busy") == 1


async def test_cancelled_wait_leaves_nothing_reserved() -> None:
    budget = ReadBudget(100, per_link=1, wait=5.0)
    async with budget.reserve("a", 100):
        waiting = asyncio.create_task(budget.reserve("b", 10).__aenter__())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert budget.waiting == 0
    assert budget.reserved == 0


async def test_read_larger_than_capacity_is_rejected() -> None:
    budget = ReadBudget(100, per_link=1, wait=1.0)
    with pytest.raises(ValueError, match="exceeds the budget of 100"):
        async with budget.reserve("a", 101):
            pass
