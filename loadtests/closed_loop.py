"""The closed-loop client both benchmarks drive servers with (`make bench`, `make capacity`): a fixed number of
clients, each sending its next request as soon as the previous one is answered."""

import asyncio
import json
import time


def v1_body(text: str) -> dict:
    return {"instances": [text]}


async def closed_loop(session, url: str, texts: list[str], concurrency: int, deadline: float, body=v1_body,
                      latencies: list[float] | None = None) -> int:
    """`concurrency` clients, each posting one text after another until `deadline` (client c sends texts c,
    c + concurrency, ...); with `latencies`, each request's is appended and the failed ones are counted (returned)."""
    errors = 0

    async def client(index: int) -> None:
        nonlocal errors
        i = index
        while time.perf_counter() < deadline:
            payload = json.dumps(body(texts[i % len(texts)]))
            start = time.perf_counter()
            async with session.post(url, data=payload, headers={"content-type": "application/json"}) as reply:
                await reply.read()
                ok = reply.status == 200
            if latencies is not None:
                latencies.append(time.perf_counter() - start)
                errors += not ok
            i += concurrency

    await asyncio.gather(*(client(c) for c in range(concurrency)))
    return errors
