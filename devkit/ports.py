"""Loopback ports for the servers that tests, benchmarks and `make` targets start: one helper for all of them.

Binding port 0 and closing the socket hands out a port from the kernel's ephemeral range, which any outgoing
connection may take before the server binds it again (this failed `make test` once in three runs). So:

- ports come from below the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), where the kernel never
  picks a port for an outgoing connection;
- each port is reserved with an exclusive `flock` on a lock file shared by every process on this machine, held
  until `release` or until this process exits, so no other test of this run, and no other pytest or benchmark
  running beside it, is handed the same port;
- a port is handed out only if nothing listens on it now (a bind check);
- the lock directory is 1777 and every lock file 0666, so that a run as another user (root under `make pod-test`,
  then a developer's own) can use them; a lock file it cannot open counts as a taken port.

A server that still finds its port taken (by a program that does not use this helper) is restarted on new ports:
see `address_in_use` and `devkit.processes.start_with_retries`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import socket
import stat
import tempfile
import threading
from pathlib import Path

LOCK_DIR = Path(os.environ.get("HFSERVE_PORT_LOCK_DIR", Path(tempfile.gettempdir()) / "hfserve-port-locks"))
LOWEST = 20000            # above the usual well-known and registered service ports
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_ADDRESS_IN_USE = re.compile(r"address already in use|already in use|failed to bind|errno 98\b", re.IGNORECASE)

_held: dict[int, int] = {}   # port -> fd of its lock file
_lock = threading.Lock()


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in EPHEMERAL_RANGE_FILE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def candidate_range() -> range:
    """Ports this helper hands out: below the ephemeral range, else above it."""
    low, high = ephemeral_range()
    if low - LOWEST >= 1000:
        return range(LOWEST, low)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    raise RuntimeError(f"no room outside the ephemeral port range {low}-{high} for test servers")


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the servers themselves set it: a port in TIME_WAIT is fine, a listener is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a server bound to every interface
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _usable(directory: Path) -> bool:
    """Create `directory` for every user (1777, like /tmp) unless it exists; whether this user can add files."""
    try:
        directory.mkdir(parents=True)
        os.chmod(directory, 0o1777)  # mkdir's mode is cut by the umask
    except FileExistsError:
        with contextlib.suppress(OSError):
            info = directory.stat()
            if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o1777:
                os.chmod(directory, 0o1777)  # one this user made before: open it to everyone now
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


def lock_dir() -> Path:
    """LOCK_DIR; a per-user directory beside it where another user created LOCK_DIR for itself only (before
    it was made 1777, e.g. by a `make pod-test` under sudo)."""
    if _usable(LOCK_DIR):
        return LOCK_DIR
    own = LOCK_DIR.with_name(f"{LOCK_DIR.name}-{os.getuid()}")
    if not _usable(own):
        raise RuntimeError(f"neither {LOCK_DIR} nor {own} can hold port lock files for uid {os.getuid()}")
    return own


def _open_lock(path: Path) -> int | None:
    """The lock file's fd, creating it readable and writable by every user; None if this user may not use it
    (a file another user created before they were made 0666: that port is treated as taken)."""
    try:
        # Open first, create only when missing: with fs.protected_regular an O_CREAT open of another user's
        # file in a sticky directory fails even when the file's mode allows it.
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o666:
                os.fchmod(fd, 0o666)
        return fd
    except FileNotFoundError:
        pass
    except PermissionError:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:  # another process created it meanwhile
        return _open_lock(path)
    except PermissionError:
        return None
    os.fchmod(fd, 0o666)  # the umask cut the mode given to open
    return fd


def _try_reserve(port: int) -> bool:
    fd = _open_lock(lock_dir() / f"{port}.lock")
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    if not _can_bind(port):
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        return False
    _held[port] = fd
    return True


def reserve_ports(count: int) -> list[int]:
    """`count` distinct loopback ports, reserved for this process until `release` or exit."""
    ports = candidate_range()
    start = random.randrange(len(ports))  # concurrent processes start their scans far apart
    out: list[int] = []
    with _lock:
        for i in range(len(ports)):
            if len(out) == count:
                break
            port = ports[(start + i) % len(ports)]
            if port not in _held and _try_reserve(port):
                out.append(port)
    if len(out) < count:
        release(*out)
        raise RuntimeError(f"only {len(out)} of {count} free ports in {ports.start}-{ports.stop - 1}")
    return out


def reserve_port() -> int:
    return reserve_ports(1)[0]


def release(*ports: int) -> None:
    """Give ports back (their servers are stopped): other processes may take them again."""
    with _lock:
        for port in ports:
            fd = _held.pop(port, None)
            if fd is not None:
                os.close(fd)  # closing drops the flock


def held() -> list[int]:
    return sorted(_held)


def address_in_use(log_text: str) -> bool:
    """Whether a server's output says it could not bind its port (uvicorn, gRPC, Triton wording)."""
    return bool(_ADDRESS_IN_USE.search(log_text))
