"""`make load`: a bounded headless locust run, its reports, a plot, and pass/fail thresholds.

    python -m loadtests.run                                   # local: runtime 1 + packaged MiniLM on a free loopback port
    python -m loadtests.run --target http://127.0.0.1:8080    # an existing endpoint
    python -m loadtests.run --shape step --users 16 --duration 60 --p99-ms 1500 --protocols v1,openai

Writes under --out (default reports/load/): locust's <name>_stats.csv, <name>_stats_history.csv,
<name>_failures.csv, <name>_exceptions.csv, <name>.html, the plot <name>.png and <name>.md.
Exit status 1 when the error rate is above 0 or p99 is above --p99-ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import httpx

from loadtests import report

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def local_runtime(model_name: str, log_path: Path, extra: list[str]):
    """Runtime 1 serving the packaged MiniLM on reserved 127.0.0.1 ports; its process group is stopped on exit."""
    from hfserve.packaged_model import packaged_model_dir

    from devkit.processes import ServerProcess, huggingface_command, start_with_retries

    servers: list[ServerProcess] = []

    def start_on(ports: list[int]) -> str:
        server = ServerProcess(huggingface_command(packaged_model_dir(), model_name, *ports, *extra), log_path)
        servers.append(server)
        server.start()
        url = f"http://127.0.0.1:{ports[0]}"
        server.wait_http(f"{url}/v2/models/{model_name}/ready", timeout=300)
        print(f"runtime 1 (pid {server.pid}) serving {model_name} at {url}", flush=True)
        return url

    try:
        yield start_with_retries(start_on, 2)
    finally:
        for server in servers:
            server.stop(timeout=30)


def run_locust(url: str, out: Path, name: str, args) -> int:
    env = {**os.environ,
           "LOAD_MODEL": args.model_name, "LOAD_DIM": str(args.dim), "LOAD_PROTOCOLS": args.protocols,
           "LOAD_SHAPE": args.shape, "LOAD_USERS": str(args.users), "LOAD_DURATION": str(args.duration),
           "LOAD_SPAWN_RATE": str(args.spawn_rate), "LOAD_STEPS": str(args.steps)}
    prefix = out / name
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locustfile.py"), "--headless",
           "--host", url, "--csv", str(prefix), "--csv-full-history", "--html", str(out / f"{name}.html"),
           "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "10"]
    print("+", " ".join(cmd), flush=True)
    # The shape ends the run; the timeout only guards against a wedged one.
    return subprocess.run(cmd, env=env, cwd=REPO, timeout=args.duration + 180).returncode


def write_summary(path: Path, target: str, args, totals: report.Totals, problems: list[str], name: str) -> None:
    lines = [
        f"# Load test: `{target}`",
        "",
        f"- shape: {args.shape}, {args.users} users, {args.duration:.0f} s, protocols: {args.protocols}, model: {args.model_name}",
        f"- requests: {totals.requests}, failures: {totals.failures} ({totals.error_rate:.2%})",
        f"- throughput: {totals.rps:.1f} requests/s; latency p50 {totals.p50_ms:.0f} ms, p99 {totals.p99_ms:.0f} ms",
        f"- thresholds: error rate 0, p99 <= {args.p99_ms:.0f} ms",
        f"- result: **{'FAIL: ' + '; '.join(problems) if problems else 'PASS'}**",
        "",
        f"![throughput and latency]({name}.png)",
        "",
        f"Files: `{name}_stats.csv`, `{name}_stats_history.csv`, `{name}_failures.csv`, `{name}.html`.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="local", help="local (start runtime 1 here) or http://host:port")
    ap.add_argument("--model-name", default="minilm")
    ap.add_argument("--dim", type=int, default=384, help="expected embedding dimension (0: any)")
    ap.add_argument("--protocols", default="v1,v2,openai")
    ap.add_argument("--shape", choices=["steady", "step"], default="steady")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--spawn-rate", type=float, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--p99-ms", type=float, default=5000, help="fail when the overall p99 is above this")
    ap.add_argument("--out", default=str(REPO / "reports" / "load"))
    ap.add_argument("--name", default="load", help="file name prefix of the reports")
    ap.add_argument("--allow-remote", action="store_true", default=os.environ.get("LOAD_ALLOW_REMOTE") == "1",
                    help="allow a --target that is not a loopback address")
    ap.add_argument("--runtime-arg", action="append", default=[], help="extra argument for the local runtime")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.target == "local":
            url = stack.enter_context(local_runtime(args.model_name, out / f"{args.name}-runtime.log", args.runtime_arg))
        else:
            url = args.target.rstrip("/")
            host = httpx.URL(url).host
            if host not in ("localhost", "::1") and not host.startswith("127.") and not args.allow_remote:
                print(f"refusing to send load to {host}: pass --allow-remote (LOAD_ALLOW_REMOTE=1) for a "
                      "deployment you own", file=sys.stderr)
                return 2
        rc = run_locust(url, out, args.name, args)
    prefix = out / args.name
    if not Path(f"{prefix}_stats.csv").exists():
        print(f"locust wrote no stats (exit {rc})", file=sys.stderr)
        return 2
    totals = report.read_totals(prefix)
    png = report.plot(prefix, out / f"{args.name}.png",
                      title=f"{args.protocols} against {args.target} ({args.shape}, {args.users} users)")
    problems = report.check(totals, args.p99_ms)
    if rc != 0 and not problems:
        # locust exits non-zero when any request failed, including the last ones in flight at the
        # end, which its CSV files may not count.
        problems.append(f"locust exited with status {rc} (a failed request or an error; see {args.name}_failures.csv)")
    write_summary(out / f"{args.name}.md", args.target, args, totals, problems, args.name)
    print(f"{totals.requests} requests, {totals.failures} failed, {totals.rps:.1f} req/s, "
          f"p50 {totals.p50_ms:.0f} ms, p99 {totals.p99_ms:.0f} ms -> {png}")
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
