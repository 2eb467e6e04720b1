"""The Makefile as an interface: `make help` lists every target once, in sections, sorted within each, with
variables described rather than printed as unexpanded $(...); README's target table is the one `make help`
gives; the Makefile's shared pieces are written once (conformance invocation, release check, .PHONY) and
`make serve` serves MODEL_DIR.

`.venv/bin/python tests/test_make_help.py` rewrites README's target table from `make help`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAKEFILE = REPO / "Makefile"
README = REPO / "README.md"
BEGIN, END = "<!-- generated from `make help` by tests/test_make_help.py -->", "<!-- end of `make help` -->"
WIDTH = 132


def _make(*args: str) -> str:
    make = shutil.which("make")
    assert make, "make is required"
    proc = subprocess.run([make, "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _sections(text: str) -> list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]]:
    """(title, [(target, description)], [(variable, description)]) per section of `make help`'s output."""
    out = []
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        if not line.startswith(" "):
            out.append((line, [], []))
            continue
        assert out, f"{line!r} before the first section"
        indent = len(line) - len(line.lstrip())
        name, _, desc = line.strip().partition(" ")
        assert desc.strip(), f"{name} has no description"
        assert indent in (2, 4), line
        out[-1][1 if indent == 2 else 2].append((name, desc.strip()))
    return out


@pytest.fixture(scope="module")
def help_text() -> str:
    return _make("help")


def _described_targets() -> list[str]:
    return re.findall(r"^([a-z][a-z0-9-]*):[^=\n]*## ", MAKEFILE.read_text(), flags=re.M)


def test_help_lists_every_described_target_once_in_sorted_sections(help_text):
    assert help_text.startswith("Usage: make <target>")
    sections = _sections(help_text)
    assert len(sections) >= 5
    listed = [t for _, targets, _ in sections for t, _ in targets]
    assert sorted(listed) == sorted(_described_targets())
    assert len(listed) == len(set(listed))
    for title, targets, variables in sections:
        assert targets, f"section {title!r} has no target"
        assert [t for t, _ in targets] == sorted(t for t, _ in targets), f"{title}: targets not sorted"
        assert [v for v, _ in variables] == sorted(v for v, _ in variables), f"{title}: variables not sorted"


def test_help_shows_no_make_syntax_and_fits_a_wide_terminal(help_text):
    assert "$(" not in help_text and "$$" not in help_text
    long = [line for line in help_text.splitlines() if len(line) > WIDTH]
    assert long == []


def test_every_described_variable_is_one_the_makefile_sets_and_a_target_reads(help_text):
    makefile = MAKEFILE.read_text()
    variables = [v for _, _, vs in _sections(help_text) for v, _ in vs]
    assert {"HOST", "PORT", "MODEL_DIR", "TARGET", "IMAGE_BASES"} <= set(variables)
    for var in variables:
        assert re.search(rf"^{var} \?=", makefile, flags=re.M), f"{var} is described but not set with ?="
        assert f"$({var})" in makefile, f"{var} is described but no rule reads it"


def test_one_phony_list_names_every_target():
    makefile = MAKEFILE.read_text()
    phony = re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, flags=re.M)
    assert len(phony) == 1, "one .PHONY list"
    declared = set(phony[0].replace("\\\n", " ").split())
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", makefile, flags=re.M))
    assert targets == declared, f"missing from .PHONY: {targets - declared}; not targets: {declared - targets}"


def test_shared_invocations_are_written_once():
    makefile = MAKEFILE.read_text()
    assert makefile.count("-m pytest conformance") == 1, "the conformance invocation lives in CONFORMANCE"
    assert makefile.count("$(CONFORMANCE)") == 3
    assert makefile.count("images/release.py check") == 1, "the release check lives in RELEASE_CHECK"
    assert makefile.count("hfserve.packaged_model") == 1, "the packaged model is MODEL_DIR's default only"


@pytest.mark.parametrize("target", ["release-chart", "release-dry-run"])
def test_release_targets_run_the_release_check_first(target):
    rules = _make("-p", "-n", "help")
    deps = re.search(rf"^{target}:(.*)$", rules, flags=re.M).group(1).split()
    assert deps[0] == "release-check", deps


@pytest.mark.parametrize("target,module", [("serve", "hfserve.huggingface"), ("serve-triton", "devkit.triton_pair")])
def test_serve_serves_model_dir(target, module, tmp_path):
    override = [line for line in _make("-n", target, f"MODEL_DIR={tmp_path}").splitlines() if f"-m {module} " in line]
    assert len(override) == 1 and f'--model_dir "{tmp_path}"' in override[0], override
    packaged = subprocess.run([sys.executable, "-m", "hfserve.packaged_model"], capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()
    default = [line for line in _make("-n", target).splitlines() if f"-m {module} " in line]
    assert len(default) == 1 and f'--model_dir "{packaged}"' in default[0], default


def readme_table(help_text: str) -> str:
    rows = ["| section | targets (`make help` describes each, and the variables they read) |", "|---|---|"]
    for title, targets, _ in _sections(help_text):
        rows.append(f"| {title} | {', '.join(f'`{t}`' for t, _ in targets)} |")
    return "\n".join([BEGIN, *rows, END])


def _readme_block(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def test_readme_target_table_is_make_help(help_text):
    text = README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert _readme_block(text) == readme_table(help_text), "run `.venv/bin/python tests/test_make_help.py`"


def test_routes_table_lives_in_docs_routes_only():
    row = "| OpenAI | `POST /openai/v1/embeddings` |"
    assert row in (REPO / "docs" / "routes.md").read_text()
    for doc in (README, REPO / "docs" / "architecture.md"):
        text = doc.read_text()
        assert row not in text, f"{doc} repeats the routes table"
        assert "routes.md" in text, f"{doc} does not point to docs/routes.md"


if __name__ == "__main__":
    text = README.read_text()
    README.write_text(text.replace(_readme_block(text), readme_table(_make("help"))))
    print("README.md: target table rewritten from `make help`")
