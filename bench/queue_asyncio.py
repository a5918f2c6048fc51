"""The seed's Queue on asyncio (asyncio.Queue + N worker tasks, results kept
by put order), measured the same way as bench/queue.lua."""
import asyncio
import gc
import sys
import time


class Queue:
    def __init__(self, workers=25, maxsize=None):
        self.workers_num = workers
        self.queue = asyncio.Queue(workers * 2 if maxsize is None else maxsize)
        self.responses = {}
        self.counter = 0
        self.workers = []

    async def __aenter__(self):
        self.workers = [asyncio.create_task(self._worker()) for _ in range(self.workers_num)]
        return self

    async def __aexit__(self, *exc):
        await self.join()
        for w in self.workers:
            w.cancel()

    async def _worker(self):
        while True:
            order, coro = await self.queue.get()
            try:
                res = await coro
                if res is not None:
                    self.responses[order] = res
            except Exception:
                pass
            finally:
                self.queue.task_done()

    async def put(self, coro, delay=0):
        if delay:
            await asyncio.sleep(delay)
        await self.queue.put((self.counter, coro))
        self.counter += 1

    async def join(self):
        await self.queue.join()
        out = [self.responses[i] for i in sorted(self.responses)]
        self.responses, self.counter = {}, 0
        return out


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


async def noop():
    return None


async def job(i):
    return None


async def square(i):
    return i * i


async def nap():
    await asyncio.sleep(0.01)


async def main(scale):
    n = int(1_000_000 * scale)
    t0 = time.perf_counter()
    async with Queue(workers=25) as queue:
        for _ in range(n):
            await queue.put(noop())
    print(f"noop_tasks_per_s {n / (time.perf_counter() - t0):.0f}")

    t0 = time.perf_counter()
    async with Queue(workers=25) as queue:
        for i in range(n):
            await queue.put(square(i))
        results = await queue.join()
    assert len(results) == n
    print(f"result_tasks_per_s {n / (time.perf_counter() - t0):.0f}")

    gc.collect()
    rss0 = rss_kib()
    async with Queue(workers=25, maxsize=0) as queue:
        for i in range(n):
            await queue.put(job(i))
        print(f"pending_rss_bytes {(rss_kib() - rss0) * 1024 / n:.1f}")

    n = int(100_000 * scale)
    t0 = time.perf_counter()
    async with Queue(workers=1000) as queue:
        for _ in range(n):
            await queue.put(nap())
    print(f"sleep_seconds {time.perf_counter() - t0:.3f}")


asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 1))
