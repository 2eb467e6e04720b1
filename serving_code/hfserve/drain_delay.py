"""How long a container keeps serving after SIGTERM (both runtimes, both containers of the Triton runtime).

Kubernetes removes a terminating pod from its Service's endpoints asynchronously: the endpoint controller and every
node's proxy must catch up, and requests keep arriving meanwhile. So the default is a few seconds of serving on.
Under Knative (K_SERVICE is set in the container) the queue-proxy already holds the container's SIGTERM back until
it has drained (Knative's revision reconciler gives the user container a preStop hook that waits on the
queue-proxy), so the default there is 0: the two waits would add up.
"""

import os

DEFAULT_DELAY_S = 5.0


def default_delay_s() -> float:
    return 0.0 if os.environ.get("K_SERVICE") else DEFAULT_DELAY_S
