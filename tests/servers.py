"""Starting the project's servers for tests: reserved loopback ports, a log per server, all stopped at the end."""

import sys
from pathlib import Path

from devkit.processes import ServerProcess, start_with_retries


class RunningServer:
    def __init__(self, server: ServerProcess, http_port: int, grpc_port: int, model_name: str):
        self.server = server
        self.url = f"http://127.0.0.1:{http_port}"
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.model_name = model_name


class ServerStarter:
    """start(module, model_dir, model_name, *args) runs `python -m module` on loopback and waits for `ready_path`."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[ServerProcess] = []

    def start(self, module: str, model_dir: Path, model_name: str, *args: str,
              ready_path: str = "/v2/health/live", timeout: float = 180) -> RunningServer:
        def start_on(ports: list[int]) -> RunningServer:
            http_port, grpc_port = ports
            command = [sys.executable, "-m", module, "--model_name", model_name, "--model_dir", str(model_dir),
                       "--bind_address", "127.0.0.1", "--http_port", str(http_port), "--grpc_port", str(grpc_port),
                       *args]
            server = ServerProcess(command, self.logs / f"{model_name}-{http_port}.log")
            self.started.append(server)
            server.start()
            server.wait_http(f"http://127.0.0.1:{http_port}{ready_path.format(model=model_name)}", timeout=timeout)
            return RunningServer(server, http_port, grpc_port, model_name)

        return start_with_retries(start_on, 2)

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()
