"""The package layout shows the architecture: the library (core, methods, models, integrations)
never imports the experiment layer or the CLI, the report does not import the sweep, and
``import yopo`` stays light (the public names load lazily)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import yopo

ROOT = Path(yopo.__file__).resolve().parent
LIBRARY = ("core", "methods", "models", "integrations")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative imports resolved; for
    ``from X import a, b`` both ``X`` and ``X.a``, ``X.b`` are listed (a name may be a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _violations(folders, forbidden) -> list[str]:
    bad = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, mod in _imports(path):
                if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {mod}")
    return bad


def test_import_resolution_sees_relative_imports():
    # the scan itself: relative imports resolve to absolute names
    mods = {m for _, m in _imports(ROOT / "experiment" / "sweep" / "execute.py")}
    assert "yopo.experiment.store" in mods and "yopo.experiment.sweep.spec" in mods
    mods = {m for _, m in _imports(ROOT / "core" / "registry.py")}
    assert "yopo.methods" in mods


def test_library_never_imports_experiment_or_cli():
    assert _violations(LIBRARY, ("yopo.experiment", "yopo.cli")) == []


def test_report_does_not_import_sweep():
    assert _violations(("experiment/report",), ("yopo.experiment.sweep",)) == []


def test_import_yopo_is_light_and_public_names_resolve():
    code = ("import sys, yopo\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n"
            "assert set(yopo.__all__) <= set(dir(yopo))\n"
            "missing = [n for n in yopo.__all__ if getattr(yopo, n, None) is None]\n"
            "assert not missing, missing\n"
            "assert callable(yopo.calibrate) and yopo.calibrate.__module__ == 'yopo.core.calibration'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
