"""Load shapes: steady (ramp up quickly, hold) and step-ramp (add users in steps).

Configured by environment variables, so `make load` and the workflows can size them:
    LOAD_USERS         users at the top (default 8)
    LOAD_DURATION      seconds in all (default 30)
    LOAD_SPAWN_RATE    users started per second (default 4)
    LOAD_STEPS         step-ramp: number of steps (default 4)
"""

from __future__ import annotations

import os

from locust import LoadTestShape


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class SteadyShape(LoadTestShape):
    """LOAD_USERS users, started at LOAD_SPAWN_RATE per second, for LOAD_DURATION seconds."""

    def tick(self):
        if self.get_run_time() >= _env("LOAD_DURATION", 30):
            return None
        return int(_env("LOAD_USERS", 8)), _env("LOAD_SPAWN_RATE", 4)


class StepRampShape(LoadTestShape):
    """LOAD_STEPS equal steps up to LOAD_USERS users, each step lasting LOAD_DURATION / LOAD_STEPS seconds."""

    def tick(self):
        duration, steps, users = _env("LOAD_DURATION", 30), max(1, int(_env("LOAD_STEPS", 4))), _env("LOAD_USERS", 8)
        t = self.get_run_time()
        if t >= duration:
            return None
        step = min(steps - 1, int(t // (duration / steps)))
        return max(1, round(users * (step + 1) / steps)), _env("LOAD_SPAWN_RATE", 4)


SHAPES = {"steady": SteadyShape, "step": StepRampShape}
