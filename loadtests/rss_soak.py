"""`make rss-soak`: runtime 1's resident memory under mixed-length load, sampled as requests accumulate.

A leak grows with the number of requests; allocator fragmentation over varying tensor shapes grows, then levels
off. Extra `NAME=VALUE` arguments go into the server's environment, e.g. `LD_PRELOAD=.../libjemalloc.so.2` or
`MALLOC_ARENA_MAX=2`, to compare allocators in one run. Figures: docs/reliability.md.
"""

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp
import psutil
from hfserve.packaged_model import packaged_model_dir

from .bench import HuggingfaceTarget, mixed_texts


async def soak(url: str, pid: int, requests: int, concurrency: int, every_s: float) -> list[dict]:
    """Sends `requests` one-text V1 requests of the mixed corpus; returns RSS samples (time, requests, MB)."""
    texts = mixed_texts(4000, seed=3)
    process = psutil.Process(pid)
    sent = 0
    samples: list[dict] = []
    start = time.monotonic()

    def sample():
        samples.append({"s": round(time.monotonic() - start), "requests": sent,
                        "rss_mb": round(process.memory_info().rss / 2**20)})
        print(json.dumps(samples[-1]), flush=True)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def client():
            nonlocal sent
            while sent < requests:
                body = {"instances": [texts[sent % len(texts)]]}
                sent += 1
                async with session.post(url, json=body) as reply:
                    await reply.read()
                    if reply.status != 200:
                        raise RuntimeError(f"status {reply.status} from {url}")

        async def sampler():
            while sent < requests:
                sample()
                await asyncio.sleep(every_s)

        await asyncio.gather(sampler(), *(client() for _ in range(concurrency)))
    sample()
    return samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--every_s", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("reports/rss-soak"))
    parser.add_argument("env", nargs="*", help="NAME=VALUE for the server's environment")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    target = HuggingfaceTarget(packaged_model_dir(), args.out / "logs")
    target.server.env.update(env)
    with target:
        samples = asyncio.run(soak(target.url, target.server.pid, args.requests, args.concurrency, args.every_s))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "samples.json").write_text(json.dumps({"env": env, "samples": samples}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
