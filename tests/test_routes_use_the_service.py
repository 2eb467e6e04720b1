"""Every protocol reaches the model through the one encoder service (core/encoder_service.py) and finds the model
through the one lookup (serving/served_model.py): a route module that imports the engine, a backend, or the
pipeline's steps, or that looks a model up in the registry itself, fails here."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "serving_code" / "hfserve"
ROUTE_MODULES = sorted([*(PACKAGE / "serving" / "openai").glob("*.py"), *(PACKAGE / "serving" / "tei").glob("*.py"),
                        *(PACKAGE / "serving" / "hf_inference").glob("*.py"), PACKAGE / "serving" / "kserve_adapter.py",
                        PACKAGE / "serving" / "protocol_routers.py"])
# What only the service and the backends may use: running the model, and the steps the service takes in order.
BYPASSES = ("hfserve.engine", "hfserve.huggingface", "hfserve.transformer", "hfserve.triton",
            "hfserve.tasks.tokenization", "hfserve.tasks.handlers")


def _imports(source: str, package: list[str]) -> list[str]:
    """Every module (and module.name) the source imports, relative imports resolved against `package`."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


def _bypasses(path: Path) -> list[str]:
    package = ["hfserve", *path.relative_to(PACKAGE).parent.parts]
    return [name for name in _imports(path.read_text(), package) if name.startswith(BYPASSES)]


def test_route_modules_reach_the_model_only_through_the_service():
    assert len(ROUTE_MODULES) >= 8
    offending = {str(p.relative_to(PACKAGE)): _bypasses(p) for p in ROUTE_MODULES if _bypasses(p)}
    assert not offending, f"route modules that bypass core/encoder_service.py: {offending}"


def test_route_modules_find_the_model_through_the_one_lookup():
    lookups = {}
    for path in ROUTE_MODULES:
        calls = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and node.attr == "get_model"]
        if calls:
            lookups[str(path.relative_to(PACKAGE))] = calls
    assert not lookups, f"look the model up with serving/served_model.py, not registry.get_model: {lookups}"


def test_the_check_sees_a_bypass():
    """The import resolution itself: relative and absolute imports of the engine from a route package are caught."""
    source = "from ...engine.batcher import DynamicBatcher\nimport hfserve.transformer.triton_backend\n" \
             "from ..served_model import served_model\n"
    found = [n for n in _imports(source, ["hfserve", "serving", "tei"]) if n.startswith(BYPASSES)]
    assert found == ["hfserve.engine.batcher", "hfserve.engine.batcher.DynamicBatcher",
                     "hfserve.transformer.triton_backend"]
