"""Send scoring requests to the churn API, as its clients would.

    python examples/churn_api/load.py --url http://127.0.0.1:8000 --requests 500

It first waits (up to `--wait` seconds) until the API answers `GET /health`, so it can be
started right after the server. Customers are drawn from a seeded generator; a share of the
calls carry an API key (recorded only as a keyed pseudonym), a few are invalid (422, recorded as
requests without a decision). Prints how many calls got which status.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import sys

import httpx


def customers(count: int, seed: int) -> list[dict[str, float | int]]:
    rng = random.Random(seed)
    return [{"tenure_months": round(rng.uniform(0, 72), 1),
             "monthly_charges": round(rng.uniform(20, 120), 2),
             "support_calls": rng.randint(0, 8)} for _ in range(count)]


async def wait_until_ready(client: httpx.AsyncClient, seconds: float) -> None:
    """Poll `GET /health` until the API answers: the server started just before may still be
    loading (under `opentelemetry-instrument`, for a few seconds)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            if asyncio.get_running_loop().time() >= deadline:
                raise
        await asyncio.sleep(0.2)


async def send(url: str, count: int, concurrency: int, seed: int,
               wait: float = 60.0) -> collections.Counter[int]:
    statuses: collections.Counter[int] = collections.Counter()
    queue: asyncio.Queue[tuple[int, dict[str, float | int]]] = asyncio.Queue()
    for index, customer in enumerate(customers(count, seed)):
        queue.put_nowait((index, customer))

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index, customer = queue.get_nowait()
            headers = {"x-api-key": f"partner-{index % 3}"} if index % 2 else {}
            body: dict[str, float | int | str] = dict(customer)
            if index % 50 == 49:
                body["monthly_charges"] = "not a number"
            response = await client.post("/predict", json=body, headers=headers)
            statuses[response.status_code] += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await wait_until_ready(client, wait)
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wait", type=float, default=60.0,
                        help="seconds to wait for the API to answer GET /health")
    options = parser.parse_args(argv)
    try:
        statuses = asyncio.run(send(options.url, options.requests, options.concurrency,
                                    options.seed, options.wait))
    except httpx.HTTPError as error:
        print(f"load: cannot reach {options.url}: {error}", file=sys.stderr)
        return 2
    print("load: " + ", ".join(f"{count} x HTTP {status}"
                               for status, count in sorted(statuses.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
