"""The conformance run's own checks and reports, registered as plugins by conftest.py.

ExecutedFloor    fails a full run that executed fewer tests than its target's floor, in total or in any group
MarkdownSummary  reports/conformance/<target>.md: counts per group, every failure and skip with its reason
"""

from __future__ import annotations

import datetime as _dt
import time
from collections import defaultdict
from pathlib import Path

import pytest

GROUPS = {
    "v1": "KServe V1 REST protocol",
    "v2_rest": "Open Inference Protocol (V2) over REST",
    "v2_grpc": "Open Inference Protocol (V2) over gRPC",
    "openai": "OpenAI-compatible routes, with the official openai client",
    "hf_inference": "Hugging Face Inference API (POST /) and TGI routes, with huggingface_hub.InferenceClient",
    "parity": "both runtimes give the same answers for the same inputs",
    "batching": "dynamic batching under concurrent load",
    "gpu": "GPU placement and batching (needs a GPU)",
    "degradation": "container failure, readiness, recovery and drain",
    "bad_input": "malformed and hostile requests get 4xx JSON errors",
    "attack": "the security review's hostile requests, with /v2/health/live and RSS watched (make attack)",
    "limits": "truncation, request size and item count limits",
    "tasks": "tiny checkpoints of the other encoder and generative tasks",
    "tei": "TEI-compatible routes, reranking, truncation control and timing headers",
    "cluster": "only on a real cluster (KUBECONFIG)",
    "pods": "the images run as podman pods under the chart's security context (--target pods)",
}


def group_of(keywords) -> str:
    """The one group a test is counted in (its marks: the first of GROUPS; a task test is filed as tasks)."""
    if "tasks" in keywords:  # the task tests also carry their protocol's mark
        return "tasks"
    for name in GROUPS:
        if name in keywords and name != "cluster":
            return name
    return "cluster" if "cluster" in keywords else "other"


class ExecutedFloor:
    """Counts the tests whose body ran (passed or failed, not skipped), per group, and fails a run below the
    target's floor (`Target.floor`) or with a group below its floor (`Target.group_floors`): a target that
    silently skips or deselects everything (no cluster, a broken fixture, a lost group or an optional import)
    must not report green. -m, -k or test ids select a subset: then one executed test is enough."""

    def __init__(self, config, target):
        self.config = config
        self.target = target  # called at the end: the Target the run used
        self.executed: dict[str, int] = defaultdict(int)
        self.messages: list[str] = []

    @staticmethod
    def subset(config) -> bool:
        """-m, -k, --deselect or a path narrower than the conformance directory select a part of the suite."""
        here = Path(__file__).resolve().parent
        narrower = any(Path(arg.split("::")[0]).resolve() != here for arg in config.args)
        return bool(config.option.markexpr or config.option.keyword or config.option.deselect or narrower)

    def floors(self) -> tuple[int, dict[str, int]]:
        """(total floor, floor per group) of this run."""
        given = self.config.getoption("--min-executed")
        if given is not None:
            return given, {}
        if self.subset(self.config):
            return 1, {}
        target = self.target()
        return target.floor, dict(target.group_floors)

    def pytest_runtest_logreport(self, report):
        if report.when == "call" and not report.skipped:
            self.executed[group_of(report.keywords)] += 1

    def shortfalls(self) -> list[str]:
        total, groups = self.floors()
        name = self.config.getoption("--target")
        found = []
        executed = sum(self.executed.values())
        if executed < total:
            found.append(f"conformance: only {executed} tests executed, below the floor of {total} for target "
                         f"{name!r} (see conformance/README.md); failing")
        for group, floor in sorted(groups.items()):
            if self.executed[group] < floor:
                found.append(f"conformance: group {group!r} executed {self.executed[group]} tests, below its floor "
                             f"of {floor} for target {name!r}; failing")
        return found

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if self.config.option.collectonly or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED,
                                                                pytest.ExitCode.NO_TESTS_COLLECTED):
            return
        self.messages = self.shortfalls()
        if self.messages:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        for message in self.messages:
            terminalreporter.write_line(message, red=True, bold=True)


# --------------------------------------------------------------------------------------------
# markdown summary


class MarkdownSummary:
    """Writes a short markdown report: counts per group, then every failure and skip with its reason."""

    def __init__(self, config, path: Path, target):
        self.config, self.path, self.target = config, path, target
        self.results: dict[str, dict] = {}
        self.started = time.time()

    def pytest_runtest_logreport(self, report):
        rec = self.results.setdefault(report.nodeid, {"group": group_of(report.keywords), "outcome": "passed", "why": "",
                                                      "props": []})
        if report.when == "call" and report.user_properties:
            rec["props"] = list(report.user_properties)
        if report.when == "call" or report.outcome != "passed":
            if report.skipped:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                rec.update(outcome="skipped", why=reason.removeprefix("Skipped: "))
            elif report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                msg = crash.message if crash is not None else str(report.longrepr)
                kind = "failed" if report.when == "call" else f"error in {report.when}"
                if rec["outcome"] != "failed":
                    rec.update(outcome="failed", why=f"{kind}: {msg}")
            elif report.when == "call" and rec["outcome"] not in ("failed", "skipped"):
                rec.update(outcome="passed", why="")

    def pytest_sessionfinish(self, session, exitstatus):
        target = self.config.getoption("--target")
        counts = defaultdict(lambda: defaultdict(int))
        for rec in self.results.values():
            counts[rec["group"]][rec["outcome"]] += 1
        total = defaultdict(int)
        for c in counts.values():
            for k, v in c.items():
                total[k] += v
        lines = [
            f"# Conformance report: `{target}`",
            "",
            f"- finished: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}, "
            f"took {time.time() - self.started:.0f} s, pytest exit status {int(session.exitstatus)}",
            f"- **{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped**",
            f"- JUnit XML: `{Path(self.config.option.xmlpath).name if getattr(self.config.option, 'xmlpath', None) else '-'}`",
            "",
            "| group | what it checks | passed | failed | skipped |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for group in list(GROUPS) + ["other"]:
            if group in counts:
                c = counts[group]
                lines.append(f"| {group} | {GROUPS.get(group, '')} | {c['passed']} | {c['failed']} | {c['skipped']} |")
        for outcome, title in (("failed", "Failed"), ("skipped", "Skipped")):
            recs = [(n, r) for n, r in self.results.items() if r["outcome"] == outcome]
            if recs:
                lines += ["", f"## {title}", ""]
                for nodeid, rec in recs:
                    why = " ".join(rec["why"].split())[:400].replace("|", "\\|")
                    lines.append(f"- `{nodeid}`: {why}")
        floor = self.config.pluginmanager.get_plugin("conformance-executed-floor")
        if floor is not None and floor.messages:
            lines += [""] + [f"**{m}**" for m in floor.messages]
        measured = [(n, r["props"]) for n, r in self.results.items() if r.get("props")]
        if measured:
            lines += ["", "## Measurements", ""]
            for nodeid, props in measured:
                lines.append(f"- `{nodeid}`: " + ", ".join(f"{k} = {v}" for k, v in props))
        na = self.target()
        if na is not None and na.not_applicable:
            lines += ["", "## Not applicable to this target (deselected)", ""]
            lines += [f"- `{n}`: {why}" for n, why in na.not_applicable]
        passed = [n for n, r in self.results.items() if r["outcome"] == "passed"]
        if passed:
            lines += ["", "## Passed", "", "<details><summary>" + f"{len(passed)} tests" + "</summary>", ""]
            lines += [f"- `{n}`" for n in passed]
            lines += ["", "</details>"]
        self.path.write_text("\n".join(lines) + "\n")

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.write_line(f"conformance summary: {self.path}")
