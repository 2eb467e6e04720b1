"""KServe's placeholder pass over a container.

pkg/controller/v1beta1/inferenceservice/utils/utils.go, `ReplacePlaceholders`: the whole
container is serialised to JSON, parsed as a Go text/template and executed with the
InferenceService's ObjectMeta. So `{{.Name}}`, `{{.Namespace}}` ... are substituted in every
field (command, args, env, probes, image), and a `{{` Go cannot parse or execute fails the
InferenceService (InvalidPredictorSpec). It runs on `kserve-container` and
`transformer-container` only (components/predictor.go, `buildPodSpec`).

This restatement accepts the actions `{{.Field}}` for the ObjectMeta fields that are plain
strings, with optional spaces and the trim markers `{{-`/`-}}`; everything else (a function
call, a pipeline, an unterminated action, a Jinja-style `{{ messages }}`) raises
TemplateError. That is stricter than Go, in the safe direction: Go also accepts map fields
(`{{.Labels.x}}`, `{{.Annotations.x}}`, which KServe's own mlserver and predictiveserver runtimes
use), `{{.Generation}}`, `{{len .Name}}` and comments (`{{/* */}}`); the chart uses none of them.
Quotes inside an action cannot work at all, because the JSON serialisation escapes them before
the template is parsed.
"""

from __future__ import annotations

import json
import re
from typing import Any

# String fields of metav1.ObjectMeta (json names are what the template sees as Go field names)
_FIELDS = {"Name": "name", "Namespace": "namespace", "GenerateName": "generateName", "UID": "uid",
           "ResourceVersion": "resourceVersion"}
_ACTION = re.compile(r"\{\{(-\s+)?\s*(.*?)\s*(\s+-)?\}\}", re.S)


class TemplateError(ValueError):
    """Go's text/template would refuse the container (the ISVC fails with InvalidPredictorSpec)."""


def _render_string(text: str, meta: dict[str, Any]) -> str:
    out, pos = [], 0
    for m in _ACTION.finditer(text):
        out.append(text[pos:m.start()])
        expr = m.group(2)
        field = re.fullmatch(r"\.([A-Za-z_][A-Za-z0-9_]*)", expr)
        if not field:
            raise TemplateError(f"template: container-tmpl: cannot evaluate action {{{{{expr}}}}}")
        if field.group(1) not in _FIELDS:
            raise TemplateError(f"template: container-tmpl: can't evaluate field {field.group(1)} in ObjectMeta")
        out.append(str(meta.get(_FIELDS[field.group(1)], "")))
        pos = m.end()
    rest = text[pos:]
    if "{{" in rest:
        raise TemplateError("template: container-tmpl: unclosed action")
    out.append(rest)
    return "".join(out)


def render_placeholders(container: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The container after KServe's template pass, as a new dict; TemplateError when Go would fail."""
    # Go templates the JSON text, so a `{{` anywhere (keys included) counts; walking the
    # decoded values is equivalent for the actions accepted above.
    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return _render_string(node, meta)
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return {walk(k): walk(v) for k, v in node.items()}
        return node

    return walk(json.loads(json.dumps(container)))
