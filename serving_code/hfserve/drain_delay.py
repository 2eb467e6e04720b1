"""How long a container keeps serving after SIGTERM (both runtimes, both containers of the Triton runtime).

Kubernetes removes a terminating pod from its Service's endpoints asynchronously: the endpoint controller and every
node's proxy must catch up, and requests keep arriving meanwhile. So the default is a few seconds of serving on.
Under Knative (K_SERVICE is set in the container) the queue-proxy already holds the container's SIGTERM back until
it has drained: knative.dev/serving pkg/reconciler/revision/resources/deploy.go (`userLifecycle`) gives the user
container a preStop httpGet on the queue-proxy's admin port at pkg/queue's `RequestQueueDrainPath`
("/wait-for-drain"), which returns once the queue-proxy has shut down. So the default there is 0: the two waits
would add up. HFSERVE_DRAIN_DELAY_S (the chart's
`drainDelaySeconds`) overrides both defaults; --drain_delay_s overrides everything.

The pod's terminationGracePeriodSeconds (30 s by default; the InferenceService's predictor can set it, a
ServingRuntime cannot) must cover the delay plus the longest request; raise it there for slow requests.
"""

import os

DEFAULT_DELAY_S = 5.0


def default_delay_s() -> float:
    configured = os.environ.get("HFSERVE_DRAIN_DELAY_S", "").strip()
    if configured:
        return max(0.0, float(configured))
    return 0.0 if os.environ.get("K_SERVICE") else DEFAULT_DELAY_S
