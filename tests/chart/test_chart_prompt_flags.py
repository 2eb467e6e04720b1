"""The chart's prompt values (huggingface.args / triton.args defaultPromptName and defaultPrompt) reach both
runtimes' embedding containers as --default_prompt_name / --default_prompt, and parse into the settings the
service reads, the prompt text whole (a trailing space and a colon survive YAML and the shell-free args list)."""

from __future__ import annotations

from hfserve import args as cli

from .chartlib import render
from .test_chart_flags import MODEL_NAME, container_parse, containers

PROMPTS = {"defaultPromptName": "query", "defaultPrompt": "Represent this sentence: "}
EMBEDDING_CONTAINERS = ("kserve-huggingface/kserve-container", "kserve-huggingface-triton/transformer-container")


def settings_of(objects) -> dict:
    found = {}
    for where, container in containers(objects):
        if where not in EMBEDDING_CONTAINERS:
            continue
        parser, groups = container_parse(container["command"][-1])
        argv = [a.replace("{{.Name}}", MODEL_NAME) for a in container["args"]]
        parsed = cli.parse(parser, groups, argv)
        found[where] = (parsed.default_prompt_name, parsed.default_prompt,
                        [a for a in argv if a.startswith("--default_prompt")])
    return found


def test_prompt_values_reach_both_runtimes():
    found = settings_of(render({"huggingface": {"args": PROMPTS}, "triton": {"args": PROMPTS}}))
    assert set(found) == set(EMBEDDING_CONTAINERS)
    for where, (name, text, _) in found.items():
        assert (name, text) == ("query", "Represent this sentence: "), where


def test_no_prompt_flag_by_default():
    for where, (name, text, flags) in settings_of(render()).items():
        assert (name, text, flags) == (None, None, []), where
