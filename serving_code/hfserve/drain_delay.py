"""How long a container keeps serving after SIGTERM (both runtimes, both containers of the Triton runtime).

Kubernetes removes a terminating pod from its Service's endpoints asynchronously: the endpoint controller and every
node's proxy must catch up, and requests keep arriving meanwhile. So the default is a few seconds of serving on.
Under Knative (K_SERVICE is set in the container) the queue-proxy already holds the container's SIGTERM back until
it has drained (Knative's revision reconciler gives the user container a preStop hook that waits on the
queue-proxy), so the default there is 0: the two waits would add up. HFSERVE_DRAIN_DELAY_S (the chart's
`drainDelaySeconds`) overrides both defaults; --drain_delay_s overrides everything.

The pod's terminationGracePeriodSeconds (30 s unless the InferenceService sets it; a ServingRuntime cannot) must
cover the delay plus the longest request: 5 s + the transformer's 30 s predictor timeout fits only because the
grace period counts from SIGTERM and requests rarely take that long; raise it on the InferenceService for slow
models.
"""

import os

DEFAULT_DELAY_S = 5.0


def default_delay_s() -> float:
    configured = os.environ.get("HFSERVE_DRAIN_DELAY_S", "").strip()
    if configured:
        return max(0.0, float(configured))
    return 0.0 if os.environ.get("K_SERVICE") else DEFAULT_DELAY_S
