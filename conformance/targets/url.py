"""The URL target: one or more existing endpoints ("http://host:port[,http://host2:port]"); no process control,
so the tests that kill containers are skipped for them, and parity needs two URLs."""

from __future__ import annotations

from urllib.parse import urlparse

from conformance.targets.deployment import MINILM, Deployment, Target, floors


def url_deployments(urls: list[str], model_names: list[str], runtimes: list[str], grpc_targets: list[str],
                    triton_urls: list[str], embedding_dim: int | None) -> list[Deployment]:
    deps = []
    for i, url in enumerate(urls):
        url = url.rstrip("/")
        parsed = urlparse(url)
        pick = lambda values, default: values[i] if i < len(values) else (values[-1] if values else default)  # noqa: E731
        grpc = pick(grpc_targets, None) or f"{parsed.hostname}:{(parsed.port or 80) + 1}"
        runtime = pick(runtimes, "unknown")
        model = pick(model_names, MINILM)
        triton = pick(triton_urls, None) if triton_urls else None
        deps.append(Deployment(
            id=f"target{i}", runtime=runtime, http_url=url, grpc_target=grpc, model_name=model,
            embedding_dim=embedding_dim, triton_http_url=triton,
            triton_model_name=model if triton else None, control=None, where="url",
        ))
    return deps


class UrlTarget(Target):
    kind = "url"
    # One URL selects 87 tests (2026-12), two URLs 181; what runs depends on the endpoint, so the floors are low.
    floor = 40
    group_floors = floors({"attack": 16, "bad_input": 44, "limits": 9, "v1": 6, "v2_rest": 6, "v2_grpc": 5, "openai": 6, "tei": 6,
                           "hf_inference": 3})  # what one URL selects

    def __init__(self, name: str, deployments: list[Deployment]) -> None:
        super().__init__(name)
        self.urls = {d.id: d for d in deployments}

    def minilm_ids(self) -> list[str]:
        return list(self.urls)

    def triton_ids(self) -> list[str]:
        return [i for i, d in self.urls.items() if d.runtime == "triton"]

    def pair_ids(self) -> list[tuple[str, str]]:
        ids = list(self.urls)
        return [(ids[0], ids[1])] if len(ids) >= 2 else []

    def get(self, dep_id: str) -> Deployment:
        return self.urls[dep_id]
