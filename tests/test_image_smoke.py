"""devkit/image_smoke.py (`make image-smoke`, run by the release and nightly workflows): image references
become the chart values that point each runtime at them, and a bad command line is refused before any pod
starts. The pods themselves run in `make image-smoke` (rootful podman and built or pulled images)."""

from __future__ import annotations

import pytest

from devkit.image_smoke import image_values, main, pods_to_run


@pytest.mark.parametrize("ref,values", [
    ("ghcr.io/hfserve/triton:0.1.0", {"registry": "ghcr.io", "repository": "hfserve/triton", "tag": "0.1.0",
                                      "digest": ""}),
    ("registry.example.com:5000/ml/huggingface-runtime:0.1.0-cpu",
     {"registry": "registry.example.com:5000", "repository": "ml/huggingface-runtime", "tag": "0.1.0-cpu",
      "digest": ""}),
    ("ghcr.io/hfserve/transformer@sha256:" + "a" * 64,
     {"registry": "ghcr.io", "repository": "hfserve/transformer", "tag": "", "digest": "sha256:" + "a" * 64}),
    ("localhost/hfserve/triton:dev", {"registry": "localhost", "repository": "hfserve/triton", "tag": "dev",
                                      "digest": ""}),
])
def test_image_references_become_chart_image_values(ref, values):
    assert image_values(ref) == values


@pytest.mark.parametrize("ref,why", [("huggingface-runtime:0.1.0", "name the registry"),
                                     ("ghcr.io/hfserve/triton", "expected REGISTRY/REPOSITORY:TAG")])
def test_an_incomplete_reference_is_refused(ref, why):
    with pytest.raises(ValueError, match=why):
        image_values(ref)


def test_one_pod_per_huggingface_image_and_one_for_the_triton_pair():
    pods = pods_to_run(["ghcr.io/a/hf:1", "ghcr.io/a/hf:1-cpu"], "ghcr.io/a/transformer:1", "ghcr.io/a/triton:1")
    assert [(label, runtime) for label, runtime, _ in pods] == [
        ("ghcr.io/a/hf:1", "kserve-huggingface"), ("ghcr.io/a/hf:1-cpu", "kserve-huggingface"),
        ("ghcr.io/a/transformer:1 + ghcr.io/a/triton:1", "kserve-huggingface-triton")]
    assert pods[2][2]["triton"]["server"]["image"]["repository"] == "a/triton"
    with pytest.raises(ValueError, match="go together"):
        pods_to_run([], "ghcr.io/a/transformer:1", None)


@pytest.mark.parametrize("argv", [[], ["--transformer", "ghcr.io/a/t:1"], ["--huggingface", "hf:1"]])
def test_a_bad_command_line_exits_2_before_starting_anything(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
