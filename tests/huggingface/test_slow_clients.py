"""Security review M2 with raw sockets on loopback (runtime 1, the packaged MiniLM, one backpressure slot): a body or
headers trickled in, a connection that sends nothing and a client that reads nothing of its response hold a
connection for --request_read_timeout_s / --response_write_timeout_s at most, and never keep the slot from others."""

import socket
import time

import httpx

from tests.servers import served

READ_S = WRITE_S = 2.0
strict = served("minilm", "slowguard", "--max_concurrent_requests", "1", "--request_read_timeout_s", str(READ_S),
                "--response_write_timeout_s", str(WRITE_S))


def connect(server, rcvbuf: int | None = None) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connecting: the TCP window the server sees stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect((host, int(port)))
    return sock


def normal_post(server) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{server.model_name}:predict", json={"instances": ["hi"]}, timeout=30)


def read_until_closed(sock: socket.socket, trickle: bytes = b"", every_s: float = 0.25,
                      limit_s: float = 30.0) -> tuple[bytes, float]:
    """Sends `trickle` a byte at a time (if any) and reads until the server closes; (what came back, seconds)."""
    started = time.monotonic()
    sock.settimeout(every_s)
    received = b""
    sent = 0
    while time.monotonic() - started < limit_s:
        if sent < len(trickle):
            try:
                sock.sendall(trickle[sent:sent + 1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                break
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def test_a_trickled_body_holds_no_slot_and_gets_408_at_the_read_deadline(strict):
    head = (f"POST /v1/models/{strict.model_name}:predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: 1000\r\n\r\n{{").encode()
    slow = [connect(strict) for _ in range(3)]
    try:
        for sock in slow:
            sock.sendall(head)
        sent_at = time.monotonic()  # the read deadline runs from the request's first byte
        # three uploads under way and one slot: a normal client is served at once, not refused
        assert normal_post(strict).status_code == 200
        received, _ = read_until_closed(slow[0], trickle=b" " * 200)
        took = time.monotonic() - sent_at
        assert received.startswith(b"HTTP/1.1 408"), received[:200]
        assert b"--request_read_timeout_s" in received and b"connection: close" in received.lower()
        assert READ_S - 0.1 <= took < READ_S + 5, took
    finally:
        for sock in slow:
            sock.close()
    assert normal_post(strict).status_code == 200


def test_trickled_headers_and_a_silent_connection_are_closed_at_the_read_deadline(strict):
    headers = connect(strict)
    silent = connect(strict)
    try:
        headers.sendall(b"POST /v1/models/x:predict HTTP/1.1\r\n")
        received, took = read_until_closed(headers, trickle=b"x-slow: " + b"a" * 200)
        assert received.startswith(b"HTTP/1.1 408") and READ_S - 0.1 <= took < READ_S + 5, (received[:200], took)
        received, _ = read_until_closed(silent)  # accepted before `headers` sent anything: its deadline has passed
        assert received == b""  # closed: a connection that never sends a request is not kept
    finally:
        headers.close()
        silent.close()
    assert normal_post(strict).status_code == 200


def test_a_client_that_reads_nothing_is_disconnected_and_its_slot_released(strict):
    """/tokenize of 64 texts of 254 tokens is about 1 MB of JSON; a client with a 4 KB window that reads none of it
    holds the one slot (a normal POST meanwhile gets 429) until the write deadline disconnects it."""
    body = httpx.Request("POST", "/tokenize", json={"inputs": ["the quick brown fox jumps over the lazy dog " * 28]
                                                   * 64}).read()
    reader = connect(strict, rcvbuf=4096)
    try:
        reader.sendall(b"POST /tokenize HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                       b"content-length: %d\r\n\r\n%s" % (len(body), body))
        refused_while_stalled = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = normal_post(strict).status_code
            if status == 429:
                refused_while_stalled = True
            elif status == 200 and refused_while_stalled:
                break  # the stalled reader was disconnected and its slot released
            time.sleep(0.2)
        assert refused_while_stalled, "the unread response never held the slot (was it smaller than the buffers?)"
        assert status == 200, f"the slot stayed taken for 60 s behind a client that reads nothing: {status}"
    finally:
        reader.close()


def test_a_body_declared_over_the_limit_is_refused_at_once(strict):
    """Bodies are read before a slot is taken, but one whose Content-Length is over --max_request_bytes is not waited
    for: 413 by its header, long before the read deadline."""
    with connect(strict) as sock:
        started = time.monotonic()
        sock.sendall(f"POST /v1/models/{strict.model_name}:predict HTTP/1.1\r\nhost: x\r\ncontent-type: "
                     f"application/json\r\ncontent-length: {10 << 20}\r\n\r\n{{".encode())
        response = sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert time.monotonic() - started < READ_S - 0.5
