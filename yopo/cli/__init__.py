"""The ``yopo`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module. A command's module (and whatever it imports: torch for most) is loaded
# only when that command runs; `yopo --help`, `yopo models`, `yopo methods` and errors in the
# command name never import torch (tests/test_cli_startup.py).
COMMANDS = {
    "prune": "yopo.cli.prune",
    "train": "yopo.cli.train",
    "inspect": "yopo.cli.inspect",
    "methods": "yopo.cli.listing",
    "models": "yopo.cli.listing",
    "hf": "yopo.cli.hf",
    "sweep": "yopo.cli.sweep",
    "report": "yopo.cli.report",
}
# the one-line help of each command in `yopo --help` (the test checks it against each module's own)
HELP = {
    "prune": "compute the once-only saliency of a model, save it, print a mask",
    "train": "prune at initialization, then train the sparse network",
    "inspect": "describe a family artifact; with --sparsity, print that mask",
    "methods": "list the scoring methods and their options",
    "models": "list the models available by name",
    "hf": "stream YOPO saliency of a transformers config (no download) to disk",
    "sweep": "run or resume a sweep (methods x sparsities x seeds x datasets x models)",
    "report": "tables (markdown + LaTeX) and figures (PNG + PDF) from a sweep database",
}


def build_parser(commands=None) -> argparse.ArgumentParser:
    """The ``yopo`` parser. ``commands``: the subcommands whose full parsers are built (importing
    their modules); the others get a stub that only carries their help line. None = all."""
    parser = argparse.ArgumentParser(
        prog="yopo",
        description="Pruning at initialization with once-only, data-free saliency (You Only Prune Once). "
        "Compute a saliency once, then derive masks at any exact sparsity.",
    )
    parser.add_argument("--version", action="version", version=f"yopo {__import__('yopo').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, modname in COMMANDS.items():
        if commands is None or name in commands:
            importlib.import_module(modname).add_parser(sub, name)
        else:
            sub.add_parser(name, help=HELP[name], add_help=False)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: its first word (the top level has only flags without values)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command(argv)
    parser = build_parser(set() if command is None else {command})
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"yopo {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
