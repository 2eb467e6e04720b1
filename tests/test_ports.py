"""The one port helper: reserved ports outside the ephemeral range, never handed out twice on this machine."""

import socket
import subprocess
import sys
import textwrap

import pytest

from devkit import ports
from devkit.processes import PortInUse, ServerProcess, start_with_retries


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
