"""Start-up: listing commands, help and command-name errors never import torch; the static
catalog they print is what the registries hold."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# runs `yopo ARGS` as `python -m yopo` would and reports on stderr whether torch got imported
WRAPPER = """
import runpy, sys
sys.argv = ["yopo", *sys.argv[1:]]
try:
    runpy.run_module("yopo", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
else:
    code = 0
sys.stderr.write(f"\\nTORCH_IMPORTED={'torch' in sys.modules}\\n")
sys.exit(code)
"""


def _yopo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)


@pytest.mark.parametrize("args,code,expect", [
    (["--help"], 0, "COMMAND"),
    (["models"], 0, "resnet20"),
    (["methods"], 0, "synflow"),
    (["--version"], 0, "yopo"),
    (["bogus"], 2, "invalid choice: 'bogus'"),
    ([], 2, "required: COMMAND"),
    (["--bogus"], 2, "required: COMMAND"),
])
def test_listing_help_and_command_errors_do_not_import_torch(args, code, expect):
    r = _yopo(*args)
    assert r.returncode == code, r.stderr
    assert expect in r.stdout + r.stderr
    assert "TORCH_IMPORTED=False" in r.stderr


def test_a_command_that_needs_torch_still_runs():
    r = _yopo("inspect", "no_such_file.safetensors")
    assert r.returncode == 2 and "no_such_file" in r.stderr


def test_catalog_matches_the_registries():
    from yopo.cli import catalog
    from yopo.cli.listing import methods_from_registry, models_from_registry

    hint = "yopo/cli/catalog.py is stale: regenerate it with `python -m yopo.cli.listing`"
    assert list(catalog.METHODS) == methods_from_registry(), hint
    assert list(catalog.MODELS) == models_from_registry(), hint


def test_help_lines_match_each_commands_own_help():
    from yopo.cli import COMMANDS, HELP, build_parser

    parser = build_parser()  # every command's full parser
    sub = next(a for a in parser._actions if a.dest == "command")
    own = {a.dest: a.help for a in sub._choices_actions}
    assert own == HELP and set(HELP) == set(COMMANDS)
