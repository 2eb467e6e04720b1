"""Regenerate the "## Parameters" section of a chart README from the `## @section` and
`## @param` comments of its values.yaml (the same annotations Bitnami's readme-generator reads).

    python charts/tools/values_table.py charts/kserve-huggingface-runtimes          # rewrite README.md
    python charts/tools/values_table.py charts/kserve-huggingface-runtimes --check  # exit 1 if stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

SECTION = re.compile(r"^\s*## @section (.+)$")
PARAM = re.compile(r"^\s*## @param (\S+) (.+)$")
HEADING = "## Parameters\n"


def _default(values: dict, dotted: str) -> str:
    node = values
    for part in dotted.split("."):
        node = node[part]
    if isinstance(node, str):
        return f'`"{node}"`' if node == "" else f"`{node}`"
    return f"`{json.dumps(node)}`"


def table(chart: Path) -> str:
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text)
    out: list[str] = []
    for line in text.splitlines():
        if m := SECTION.match(line):
            if out:
                out.append("")
            out += [f"### {m.group(1)}", "", "| Name | Description | Default |", "| ---- | ----------- | ------- |"]
        elif m := PARAM.match(line):
            desc = m.group(2).replace("|", "\\|")
            out.append(f"| `{m.group(1)}` | {desc} | {_default(values, m.group(1))} |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    chart = Path(argv[0])
    readme = chart / "README.md"
    current = readme.read_text()
    head = current.split(HEADING, 1)[0]
    updated = head + HEADING + "\n" + table(chart)
    if "--check" in argv:
        if updated != current:
            print(f"{readme} is stale: run python charts/tools/values_table.py {chart}", file=sys.stderr)
            return 1
        return 0
    readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
