"""What `make gpu-check` carries to the GPU machine, packed to fit its 64 MiB, and unpacked there.

The GPU machine has Python 3.12 with torch and transformers and no network; everything else the check imports
(requirements/gpu-check.txt: the serving stack and the nvidia-pytriton wheel's Triton) has to travel with the
project, 64 MiB in all. As wheels that is 81 MiB. So `build` installs them here for the target Python
(`pip install --target` with that Python's tags, no dependencies), drops what nothing there loads, and writes one
xz tar of the site tree (about 40 MiB) beside MiniLM's config and tokenizer files. On the GPU machine `unpack`
extracts it (standard library only) and the check runs with the tree first on PYTHONPATH.

Dropped, because neither tritonserver, its Python backend nor the target Python's stub loads them (readelf):
the wheel's Python-backend stubs for other Pythons and the libpython it bundles for one of them; pandas' test
suite; byte code compiled by this machine's Python.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MIB = 64
SITE_ARCHIVE = "site.tar.xz"
SITE_DIR = "site"
MODEL_FILES = "minilm-files"  # config + tokenizer files of all-MiniLM-L6-v2, read by loadtests/gpu_check.py
MINILM_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                "modules.json", "sentence_bert_config.json", "1_Pooling")
PLATFORMS = ("manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
STUBS = Path("pytriton/tritonserver/python_backend_stubs")
BUNDLED_LIBS = Path("nvidia_pytriton.libs")
LIBPYTHON = re.compile(r"libpython3[^.]*\.(\d+)\.so")  # auditwheel's name: libpython3-<hash>.13.so.1.0
UNUSED_TREES = (Path("pandas/tests"),)


def pip_install_command(python_version: str, target: Path) -> list[str]:
    abi = "cp" + python_version.replace(".", "")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp",
               "--abi", abi, "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    return command + ["--target", str(target), "-r", str(ROOT / "requirements/gpu-check.txt"),
                      "-c", str(ROOT / "requirements/constraints.txt")]


def prune(tree: Path, python_version: str) -> list[Path]:
    """Remove from an installed site tree what the target Python's Triton never loads; returns what went."""
    minor = python_version.split(".")[1]
    doomed = [p for p in tree.rglob("__pycache__") if p.is_dir()]
    doomed += [tree / p for p in UNUSED_TREES if (tree / p).exists()]
    stubs = tree / STUBS
    if stubs.is_dir():
        if not (stubs / python_version).is_dir():
            raise SystemExit(f"the nvidia-pytriton wheel has no Python-backend stub for Python {python_version}")
        doomed += [p for p in stubs.iterdir() if p.name != python_version]
    libs = tree / BUNDLED_LIBS
    if libs.is_dir():
        for lib in libs.iterdir():
            match = LIBPYTHON.match(lib.name)
            if match and match.group(1) != minor:
                doomed.append(lib)
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return doomed


def size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def build(out: Path, python_version: str, budget_mib: float, model_dir: Path, preset: int = 9) -> float:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="hfserve-gpu-pack-") as tmp:
        tree = Path(tmp) / SITE_DIR
        subprocess.run(pip_install_command(python_version, tree), check=True)
        installed = size_mib(tree)
        removed = prune(tree, python_version)
        print(f"gpu-pack: Python {python_version} site tree {installed:.0f} MiB, {size_mib(tree):.0f} MiB after "
              f"dropping {len(removed)} unused paths", flush=True)
        with tarfile.open(out / SITE_ARCHIVE, "w:xz", preset=preset) as archive:
            archive.add(tree, arcname=SITE_DIR)
    for name in MINILM_FILES:
        src, dest = model_dir / name, out / MODEL_FILES / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
    total = size_mib(out)
    print(f"gpu-pack: {out}: {total:.1f} MiB (budget {budget_mib:g} MiB)", flush=True)
    if total > budget_mib:
        raise SystemExit(f"gpu-pack: {out} is {total:.1f} MiB, over the {budget_mib:g} MiB that travel to the GPU")
    return total


def unpack(wheelhouse: Path) -> Path:
    """Extract the site tree beside its archive, once per archive; returns the folder to put on PYTHONPATH."""
    archive, site = wheelhouse / SITE_ARCHIVE, wheelhouse / SITE_DIR
    marker = site / ".unpacked"
    stamp = f"{archive.stat().st_size} {archive.stat().st_mtime_ns}\n"
    if marker.is_file() and marker.read_text() == stamp:
        return site
    shutil.rmtree(site, ignore_errors=True)
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(wheelhouse, filter="data")
    marker.write_text(stamp)
    return site


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("build", help="install, prune and pack the site tree for --python-version into --out")
    pack.add_argument("--out", type=Path, required=True)
    pack.add_argument("--python-version", default="3.12")
    pack.add_argument("--budget-mib", type=float, default=BUDGET_MIB)
    pack.add_argument("--preset", type=int, default=9, choices=range(10),
                      help="xz preset: 9 packs 182 MiB into 40 in ~3.5 min here; 0 is for a quick local dry run")
    pack.add_argument("--model-dir", type=Path, help="where MiniLM's config/tokenizer files come from "
                                                    "(default: the packaged all-MiniLM-L6-v2)")
    open_ = sub.add_parser("unpack", help="extract --wheelhouse's site tree; prints its path")
    open_.add_argument("--wheelhouse", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        if args.model_dir is None:
            from hfserve.packaged_model import packaged_model_dir

            args.model_dir = packaged_model_dir()
        build(args.out, args.python_version, args.budget_mib, args.model_dir, args.preset)
    else:
        print(unpack(args.wheelhouse))
    return 0


if __name__ == "__main__":
    sys.exit(main())
