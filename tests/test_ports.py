"""The one port helper: reserved ports outside the ephemeral range, never handed out twice on this machine."""

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from devkit import ports
from devkit.processes import PortInUse, ServerProcess, start_with_retries

REPO = Path(__file__).resolve().parents[1]


def test_ports_come_from_outside_the_ephemeral_range():
    low, high = ports.ephemeral_range()
    for port in ports.reserve_ports(20):
        assert not low <= port <= high
        assert 1024 < port < 65536


def test_a_port_is_never_handed_out_twice_in_one_process():
    first = ports.reserve_ports(50)
    second = ports.reserve_ports(50)
    assert len(set(first) | set(second)) == 100


def test_another_process_cannot_take_a_port_this_process_holds():
    mine = ports.reserve_ports(200)
    child = textwrap.dedent(f"""
        from devkit import ports
        ports.candidate_range = lambda: range({min(mine)}, {max(mine) + 1})
        got = []
        try:
            got = ports.reserve_ports({max(mine) - min(mine) + 1})
        except RuntimeError:
            got = [p for p in range({min(mine)}, {max(mine) + 1}) if ports._try_reserve(p)]
        print(",".join(map(str, got)))
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=True)
    theirs = {int(p) for p in out.stdout.strip().split(",") if p}
    assert not theirs & set(mine)


def test_a_port_someone_listens_on_is_skipped(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        monkeypatch.setattr(ports, "candidate_range", lambda: range(taken, taken + 1))
        with pytest.raises(RuntimeError, match="free ports"):
            ports.reserve_ports(1)


def test_released_ports_can_be_reserved_again(monkeypatch):
    port = ports.reserve_port()
    monkeypatch.setattr(ports, "candidate_range", lambda: range(port, port + 1))
    with pytest.raises(RuntimeError):
        ports.reserve_ports(1)
    ports.release(port)
    assert ports.reserve_ports(1) == [port]


def test_start_retries_on_new_ports_when_the_port_was_taken(tmp_path):
    """A real server (python's http.server) whose port another program holds exits with EADDRINUSE; the
    helper starts it again on a new reserved port."""
    tried: list[int] = []
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    servers: list[ServerProcess] = []

    def start_on(chosen: list[int]) -> int:
        port = chosen[0]
        if not tried:  # the first port is taken behind the helper's back
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
        tried.append(port)
        server = ServerProcess([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                               tmp_path / f"http-{port}.log")
        servers.append(server)
        server.start()
        server.wait_http(f"http://127.0.0.1:{port}/", timeout=30)
        return port

    try:
        port = start_with_retries(start_on, 1)
        assert len(tried) == 2 and port == tried[1] != tried[0]
        assert "Address already in use" in servers[0].log_tail()
    finally:
        squatter.close()
        for server in servers:
            server.stop()


def test_address_in_use_wordings():
    assert ports.address_in_use("[Errno 98] error while attempting to bind on address ('127.0.0.1', 1): "
                                "address already in use")
    assert ports.address_in_use("RuntimeError: Failed to bind to address 127.0.0.1:5")
    assert ports.address_in_use("failed to start GRPC service: Unavailable - Socket '127.0.0.1:8001' already in use")
    assert not ports.address_in_use("model loaded")
    assert PortInUse.__mro__[1] is RuntimeError


def _as_another_user(code: str, lock_dir: str) -> subprocess.CompletedProcess:
    """Run `code` as uid 1000 when this is root (as after a `sudo make pod-test`), else as this user."""
    prefix = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--"] if os.geteuid() == 0 else []
    env = {"PATH": os.environ.get("PATH", ""), "HFSERVE_PORT_LOCK_DIR": lock_dir}
    return subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=env)


def test_lock_files_are_usable_by_a_later_run_as_another_user(monkeypatch):
    """M7: root's lock files must not block a later non-root run, nor an old lock file it cannot open crash it."""
    shared = Path(tempfile.mkdtemp(prefix="hfserve-port-test-"))
    try:
        shared.chmod(0o755)
        locks = shared / "locks"
        monkeypatch.setattr(ports, "LOCK_DIR", locks)
        port = ports.reserve_port()
        ports.release(port)
        assert stat.S_IMODE(locks.stat().st_mode) == 0o1777
        assert stat.S_IMODE((locks / f"{port}.lock").stat().st_mode) == 0o666
        unusable = port + 1 if port + 1 in ports.candidate_range() else port - 1
        (locks / f"{unusable}.lock").touch()
        (locks / f"{unusable}.lock").chmod(0o444)  # written by an older run: nobody but root may open it
        low, high = min(port, unusable), max(port, unusable)
        done = _as_another_user(f"""
            from devkit import ports
            ports.candidate_range = lambda: range({low}, {high + 1})
            print(ports.reserve_ports(1)[0])
            try:
                ports.reserve_ports(1)
            except RuntimeError as exc:
                print(exc)
        """, str(locks))
        assert done.returncode == 0, done.stderr
        got, refused = done.stdout.splitlines()
        assert int(got) == port and "only 0 of 1 free ports" in refused

        # A lock directory another user made for itself only (before it was 1777): a per-user one beside it.
        shared.chmod(0o1777)  # as /tmp is
        legacy = shared / "legacy"
        legacy.mkdir(mode=0o555)
        done = _as_another_user("""
            from devkit import ports
            print(ports.reserve_port(), ports.lock_dir())
        """, str(legacy))
        assert done.returncode == 0, done.stderr
        if os.geteuid() == 0:
            assert done.stdout.split()[1] == f"{legacy}-1000"
    finally:
        shutil.rmtree(shared, ignore_errors=True)
