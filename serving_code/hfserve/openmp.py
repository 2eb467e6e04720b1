"""OpenMP tuning for the in-process runtime, where request handling and torch forward passes share the CPUs.

Under load, forward passes come back to back with a little request handling in between. libgomp's default
spin before its worker threads sleep is shorter than that gap, so every pass paid a wake-up; a longer spin
measured about 10% more throughput at concurrency 32 (docs/benchmarks.md; no gain was measured for Triton's
stubs, so only this runtime sets it). Idle workers still go to sleep within milliseconds. It must be in the
environment before torch loads libgomp; an explicit setting wins.
"""

import os

GOMP_SPINCOUNT = "30000000"


def keep_openmp_workers_warm(environ=os.environ) -> None:
    environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
