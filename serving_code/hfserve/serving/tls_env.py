"""KServe's TLS variables are refused, not half-applied (security review L3).

kserve's ModelServer moves the HTTP port to 8443 when KSERVE_TLS_CERT_FILE and KSERVE_TLS_KEY_FILE are set, but
hfserve's HTTP and gRPC servers do not take the certificate: the result was plaintext on 8443 and the probes on 8080.
TLS belongs to the gateway, the mesh sidecar or Knative's queue-proxy in front of the pod.
"""

from __future__ import annotations

import os

TLS_VARIABLES = ("KSERVE_TLS_CERT_FILE", "KSERVE_TLS_KEY_FILE")


def refuse_tls_variables(environ=os.environ) -> None:
    found = [name for name in TLS_VARIABLES if environ.get(name)]
    if found:
        raise SystemExit(f"hfserve: {' and '.join(found)} {'is' if len(found) == 1 else 'are'} set, but hfserve does "
                         "not serve TLS itself (kserve would move the port to 8443 and serve plaintext there): "
                         "terminate TLS in front of the pod (gateway, mesh sidecar) and unset them")
