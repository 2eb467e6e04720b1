"""Locate a runnable `tritonserver` and the environment it needs.

In NVIDIA's tritonserver image `tritonserver` is on PATH and brings its own backends. Locally and in tests we use
the Triton that the `nvidia-pytriton` wheel ships (`pytriton/tritonserver`). That copy needs some preparation to run
with this Python:

- the wheel's folder is read-only in spirit (it belongs to pip), so it is copied once to a writable cache folder;
- the Python backend needs `backends/python/triton_python_backend_stub` built for the running Python; the wheel
  keeps one stub per Python version under `python_backend_stubs/3.X/`;
- the stub links libpython dynamically: the running Python's own LIBDIR must come first on LD_LIBRARY_PATH (else
  the system libpython is picked and the model fails with `undefined symbol: _PyModule_Add`), followed by the
  wheel's bundled libraries (`site-packages/nvidia_pytriton.libs`);
- the stub's Python ignores PYTHONPATH and finds the virtual environment through PATH, so the venv's `bin` goes
  first on PATH.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from ..private_dir import open_lock, private_dir


class TritonNotFound(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class TritonInstall:
    """A runnable tritonserver: its binary, the backend directory to pass (None: its built-in default) and env."""

    binary: Path
    backend_dir: Path | None
    env: dict[str, str]
    from_wheel: bool


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def venv_bin_dir() -> Path:
    # sys.prefix is the venv when running inside one; its bin holds the interpreter the stub should find.
    return Path(sys.prefix) / "bin"


def _prepend(path_list: list[str], existing: str | None) -> str:
    parts = [p for p in path_list if p]
    if existing:
        parts += [p for p in existing.split(os.pathsep) if p and p not in parts]
    return os.pathsep.join(parts)


def wheel_triton_dir() -> Path | None:
    """The `tritonserver` folder inside the installed nvidia-pytriton wheel, or None."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    return folder if (folder / "bin" / "tritonserver").is_file() else None


def wheel_libs_dir(triton_dir: Path) -> Path:
    # pytriton/tritonserver -> site-packages/nvidia_pytriton.libs (auditwheel's bundled shared libraries)
    return triton_dir.parent.parent / "nvidia_pytriton.libs"


def triton_env(base: dict[str, str] | None = None, libs_dir: Path | None = None) -> dict[str, str]:
    """Environment for tritonserver and its Python-backend stubs running this interpreter's packages."""
    env = dict(os.environ if base is None else base)
    libdirs = [sysconfig.get_config_var("LIBDIR") or ""]
    if libs_dir is not None:
        libdirs.append(str(libs_dir))
    env["LD_LIBRARY_PATH"] = _prepend(libdirs, env.get("LD_LIBRARY_PATH"))
    env["PATH"] = _prepend([str(venv_bin_dir())], env.get("PATH"))
    return env


def default_cache_dir() -> Path:
    if os.environ.get("HFSERVE_CACHE_DIR"):
        return Path(os.environ["HFSERVE_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "hfserve"
    home = Path.home()
    if os.access(home, os.W_OK):
        return home / ".cache" / "hfserve"
    return Path(tempfile.gettempdir()) / f"hfserve-cache-{os.getuid()}"  # checked by private_dir before use


def _wheel_version() -> str:
    try:
        from importlib.metadata import version

        return version("nvidia-pytriton")
    except Exception:  # noqa: BLE001 - only used to key the cache folder
        return "unknown"


def prepare_wheel_triton(cache_dir: Path | None = None) -> TritonInstall:
    """Copy the wheel's tritonserver to a writable folder (once) with the stub for the running Python."""
    src = wheel_triton_dir()
    if src is None:
        raise TritonNotFound(
            "no tritonserver found: not on PATH and the nvidia-pytriton wheel is not installed "
            "(pip install nvidia-pytriton==0.7.0, or pass --tritonserver PATH)"
        )
    stub = src / "python_backend_stubs" / python_version() / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonNotFound(f"the nvidia-pytriton wheel has no Python-backend stub for Python {python_version()}")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    dest = cache_dir / f"tritonserver-{_wheel_version()}-py{python_version()}"
    binary = dest / "bin" / "tritonserver"
    dest_stub = dest / "backends" / "python" / "triton_python_backend_stub"
    private_dir(cache_dir)  # its tritonserver is executed: another user's folder is refused (security review M4)
    # Several launchers (tests, make targets) may prepare at once: serialise with a lock file, publish atomically.
    with os.fdopen(open_lock(cache_dir / ".tritonserver.lock"), "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (binary.is_file() and dest_stub.is_file() and (dest / ".complete").is_file()):
            tmp = Path(tempfile.mkdtemp(prefix=".tritonserver-", dir=cache_dir))
            try:
                shutil.copytree(src, tmp / "t", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
                shutil.copy2(stub, tmp / "t" / "backends" / "python" / "triton_python_backend_stub")
                for exe in (tmp / "t" / "bin" / "tritonserver", tmp / "t" / "backends" / "python" / "triton_python_backend_stub"):
                    exe.chmod(0o755)
                (tmp / "t" / ".complete").write_text(str(src) + "\n")
                if dest.exists():
                    shutil.rmtree(dest)
                os.replace(tmp / "t", dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return TritonInstall(
        binary=binary,
        backend_dir=dest / "backends",
        env=triton_env(libs_dir=wheel_libs_dir(src)),
        from_wheel=True,
    )


def find_triton(explicit: str | None = None, cache_dir: Path | None = None) -> TritonInstall:
    """`explicit` path, else `tritonserver` on PATH (NVIDIA's image), else the nvidia-pytriton wheel's copy."""
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            found = shutil.which(explicit)
            if not found:
                raise TritonNotFound(f"--tritonserver {explicit!r} is not an executable")
            path = Path(found)
        return TritonInstall(binary=path, backend_dir=None, env=triton_env(), from_wheel=False)
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(binary=Path(on_path), backend_dir=None, env=triton_env(), from_wheel=False)
    return prepare_wheel_triton(cache_dir)


if __name__ == "__main__":
    inst = find_triton()
    print(inst.binary)
