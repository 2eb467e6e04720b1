"""The GPU check travels and runs as it will on the GPU machine (issue 12, item 5).

- The pack for the GPU machine's Python 3.12 fits the 64 MiB carried with a device call, and holds the stub for
  3.12 and no other Python's.
- `make gpu-check-dry` runs the whole check on this CPU in a venv holding only torch + transformers (what the GPU
  machine has), everything else coming from the pack: a missing wheel fails here, not on the GPU.
Both download wheels from the package index, as `make gpu-wheelhouse` does.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from loadtests import gpu_pack

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.mark.gpu_pack
@pytest.mark.timeout(900)
def test_the_python_312_pack_fits_the_budget(tmp_path):
    out = tmp_path / "wheelhouse"
    total = gpu_pack.build(out, "3.12", gpu_pack.BUDGET_MIB, _packaged_minilm())
    assert total <= gpu_pack.BUDGET_MIB
    with tarfile.open(out / gpu_pack.SITE_ARCHIVE, "r:xz") as tar:
        names = tar.getnames()
    stubs = {Path(n).parts[4] for n in names if n.startswith(f"site/{gpu_pack.STUBS}/") and len(Path(n).parts) > 4}
    assert stubs == {"3.12"}
    assert any(n.startswith(f"site/{gpu_pack.BUNDLED_LIBS}/libtritonserver") for n in names)
    assert not [n for n in names if gpu_pack.LIBPYTHON.match(Path(n).name)], "a libpython for another Python"
    assert "site/pytriton/tritonserver/bin/tritonserver" in names
    assert (out / gpu_pack.MODEL_FILES / "tokenizer.json").is_file()


@pytest.mark.gpu_pack
@pytest.mark.timeout(1200)
def test_the_dry_run_needs_only_torch_and_transformers_beside_the_pack():
    dry = ROOT / "build" / "gpu-check-dry"
    done = subprocess.run(["make", "-s", "gpu-check-dry"], cwd=ROOT, capture_output=True, text=True, timeout=1150)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    venv_python = dry / "venv" / "bin" / "python"
    alone = subprocess.run([str(venv_python), "-c", "import kserve"], capture_output=True, text=True)
    assert alone.returncode != 0, "the dry venv has kserve of its own, so it does not prove the pack is complete"

    report = json.loads((dry / "report" / "gpu-check.json").read_text())
    assert report["env"]["device"] == "cpu"
    assert report["parity"]["min_cosine"] > 0.99
    served = {(r["target"], r["corpus"], r["concurrency"]): r for r in report["served"]}
    for target in ("kserve-huggingface", "kserve-huggingface-triton"):
        for corpus in ("uniform", "mixed"):
            for concurrency in (1, 8, 32):
                assert served[(target, corpus, concurrency)]["requests_per_s"] > 0
        assert served[(target, "uniform", 32)]["avg_batch"] > 1, f"{target} formed no batches at c=32"
    assert "DRY RUN" in (dry / "report" / "gpu-check.md").read_text()


def test_pruning_keeps_the_target_pythons_stub_and_nothing_for_the_others(tmp_path):
    tree = tmp_path / "site"
    for version in ("3.10", "3.12", "3.13"):
        (tree / gpu_pack.STUBS / version).mkdir(parents=True)
        (tree / gpu_pack.STUBS / version / "triton_python_backend_stub").write_bytes(b"\x7fELF")
    libs = tree / gpu_pack.BUNDLED_LIBS
    libs.mkdir()
    for name in ("libpython3-419a3a08.13.so.1.0", "libpython3-0a1b2c3d.12.so.1.0", "libtritonserver-717102f0.so"):
        (libs / name).write_bytes(b"\x7fELF")
    (tree / "pandas" / "tests").mkdir(parents=True)
    (tree / "pandas" / "__pycache__").mkdir()

    gpu_pack.prune(tree, "3.12")

    assert sorted(p.name for p in (tree / gpu_pack.STUBS).iterdir()) == ["3.12"]
    assert sorted(p.name for p in libs.iterdir()) == ["libpython3-0a1b2c3d.12.so.1.0", "libtritonserver-717102f0.so"]
    assert sorted(p.name for p in (tree / "pandas").iterdir()) == []
    with pytest.raises(SystemExit, match="no Python-backend stub for Python 3.9"):
        gpu_pack.prune(tree, "3.9")


def test_unpack_extracts_once_per_archive(tmp_path):
    src = tmp_path / "src" / gpu_pack.SITE_DIR
    src.mkdir(parents=True)
    (src / "module.py").write_text("VALUE = 1\n")
    with tarfile.open(tmp_path / gpu_pack.SITE_ARCHIVE, "w:xz", preset=0) as tar:
        tar.add(src, arcname=gpu_pack.SITE_DIR)
    site = gpu_pack.unpack(tmp_path)
    assert (site / "module.py").read_text() == "VALUE = 1\n"
    (site / "module.py").write_text("edited\n")
    assert gpu_pack.unpack(tmp_path) == site and (site / "module.py").read_text() == "edited\n"
    (tmp_path / gpu_pack.SITE_ARCHIVE).touch()  # a new archive: extracted again
    assert (gpu_pack.unpack(tmp_path) / "module.py").read_text() == "VALUE = 1\n"


def _packaged_minilm() -> Path:
    from hfserve.packaged_model import packaged_model_dir

    return packaged_model_dir()

