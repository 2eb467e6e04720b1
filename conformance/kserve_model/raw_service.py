"""The Service KServe creates for a predictor in Standard (RawDeployment) mode.

pkg/controller/v1beta1/inferenceservice/reconcilers/service/service_reconciler.go,
`createDefaultSvc`: the ports of `transformer-container` if the pod has one, else of the first
container; port 80 targets the first declared port (8080, named after the component, when none), the other declared ports
are exposed one to one; appProtocol kubernetes.io/h2c when the port name contains grpc or h2c.
Only declared container ports are reachable through the Service. With a logger or batcher the first
port targets the agent instead (9081, constants.InferenceServiceDefaultAgentPort).
"""

from __future__ import annotations

from typing import Any


def raw_service_ports(pod: dict[str, Any]) -> list[dict[str, Any]]:
    containers = pod["spec"]["containers"]
    target = next((c for c in containers if c["name"] == "transformer-container"), containers[0])
    ports = target.get("ports") or []
    if not ports:  # createDefaultSvc: the port is named after the component
        ports = [{"name": pod["metadata"]["name"], "containerPort": 8080}]
    out = []
    for i, p in enumerate(ports):
        entry = {"name": p.get("name", ""), "port": 80 if i == 0 else p["containerPort"], "targetPort": p["containerPort"]}
        if any(s in (p.get("name") or "") for s in ("grpc", "h2c")):
            entry["appProtocol"] = "kubernetes.io/h2c"
        out.append(entry)
    if any(c["name"] == "agent" for c in containers):
        out[0]["targetPort"] = 9081
    return out
