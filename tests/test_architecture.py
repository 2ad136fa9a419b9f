"""The import rules of docs/design.md ("Architecture"), checked on the source of every module.

Each rule names a layer and the imports it may not make. Every ``import`` and ``from ... import``
statement counts, also those inside functions (a lazy import is still a dependency). Relative
imports are resolved against the module's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import losslines

PACKAGE = Path(losslines.__file__).parent

# layer (module or package) -> (forbidden import prefixes, why)
RULES = {
    "losslines.runner": (("losslines.integrations",), "framework adapters sit on top: nothing in losslines needs them"),
    "losslines.engine": (("losslines.integrations", "losslines.runner", "losslines.store", "losslines.data", "losslines.models",
                          "losslines.analysis", "losslines.cli", "losslines.runner.config"),
                         "the engine is a measurement library: the application builds it, never the reverse"),
    "losslines.kernels": (("losslines.integrations", "losslines.engine", "losslines.losses", "losslines.runner", "losslines.store",
                           "losslines.data", "losslines.models", "losslines.analysis", "losslines.records"),
                          "kernels are leaves: loss records point at them"),
    "losslines.losses": (("losslines.integrations", "losslines.engine", "losslines.runner", "losslines.store", "losslines.data",
                          "losslines.models", "losslines.analysis"),
                         "the loss registry sits between kernels and engine"),
    "losslines.batched": (("losslines.integrations", "losslines.engine", "losslines.kernels", "losslines.losses", "losslines.records",
                           "losslines.runner", "losslines.store", "losslines.data", "losslines.models",
                           "losslines.analysis"),
                          "batched structures are a torch utility below every layer"),
    "losslines.records": (("losslines.integrations", "torch", "zarr", "losslines.engine", "losslines.store", "losslines.kernels",
                           "losslines.losses", "losslines.runner", "losslines.data", "losslines.models",
                           "losslines.analysis"),
                          "the engine-store contract depends on numpy alone"),
    "losslines.store": (("losslines.integrations", "torch", "triton", "losslines.batched", "losslines.engine", "losslines.kernels", "losslines.losses",
                         "losslines.runner", "losslines.data", "losslines.models", "losslines.analysis"),
                        "stores are read and written without torch"),
    "losslines.analysis": (("losslines.integrations", "torch", "triton", "losslines.batched", "losslines.engine", "losslines.kernels", "losslines.losses",
                            "losslines.runner", "losslines.data", "losslines.models"),
                           "a laptop without torch analyses a store measured on a cluster"),
    "losslines.models": (("losslines.integrations", "losslines.engine", "losslines.runner", "losslines.store", "losslines.analysis",
                          "losslines.data"), "models are a registry of architectures"),
    "losslines.data": (("losslines.integrations", "losslines.engine", "losslines.runner", "losslines.store", "losslines.analysis",
                        "losslines.models"), "data is a registry of datasets"),
}

# Deliberate exceptions, each with its reason: (file relative to the package's parent, import).
EXCEPTIONS = {
    # the original research code pickled torch tensors; torch is imported lazily, for such files only
    ("losslines/store/importers.py", "torch"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import statement in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]  # from pkg import submodule
    return out


def layer_files(layer: str) -> list[Path]:
    rel = Path(*layer.split(".")[1:])
    single = PACKAGE / rel.with_suffix(".py")
    return [single] if single.is_file() else sorted((PACKAGE / rel).rglob("*.py"))


def _violations(layer: str) -> list[str]:
    forbidden, _ = RULES[layer]
    found = []
    for path in layer_files(layer):
        for line, target in imports_of(path):
            where = path.relative_to(PACKAGE.parent).as_posix()
            if (where, target) in EXCEPTIONS:
                continue
            if any(target == f or target.startswith(f + ".") for f in forbidden):
                found.append(f"{where}:{line} imports {target}")
    return found


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_respects_its_import_rule(layer):
    assert layer_files(layer), f"no source files found for {layer}"
    violations = _violations(layer)
    assert not violations, f"{layer} breaks its import rule ({RULES[layer][1]}):\n" + "\n".join(violations)


def test_the_checker_sees_relative_lazy_and_from_imports(tmp_path, monkeypatch):
    """The rule check itself: it must catch each way a forbidden import can be written."""
    fake = tmp_path / "losslines" / "engine"
    fake.mkdir(parents=True)
    (tmp_path / "losslines" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "a.py").write_text("def f():\n    from ..store import writer\n")
    (fake / "b.py").write_text("import losslines.runner.config as c\n")
    (fake / "c.py").write_text("from losslines import data\n")
    (fake / "d.py").write_text("from losslines.engine import grid\nimport numpy\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "losslines")
    found = _violations("losslines.engine")
    assert any("a.py:2 imports losslines.store" in v for v in found), found
    assert any("b.py:1 imports losslines.runner.config" in v for v in found), found
    assert any("c.py:1 imports losslines.data" in v for v in found), found
    assert not any("d.py" in v for v in found), found
