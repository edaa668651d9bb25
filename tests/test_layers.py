"""Imports point down only: theory imports nothing of ours (nor torch or widgets); envs nothing of lab."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "theory": {"lab", "envs", "torch", "ipywidgets", "plotly", "IPython"},
    "envs": {"lab"},
}


def imported_top_level_modules(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, including imports inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_level_modules(path) & FORBIDDEN[package]) for path in files
    }
    assert not {path: names for path, names in offenders.items() if names}


def test_the_scan_catches_a_violation(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from lab.runs import RunStore\n    import torch.nn\n")
    assert imported_top_level_modules(module) == {"lab", "torch"}


def test_importing_theory_loads_no_upper_layer():
    code = (
        "import sys, pkgutil, importlib, theory, envs\n"
        "for m in pkgutil.walk_packages(theory.__path__, 'theory.'): importlib.import_module(m.name)\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'lab', 'torch', 'ipywidgets', 'plotly'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
