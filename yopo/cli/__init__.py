"""The ``yopo`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module (imported lazily so `yopo --help` stays fast)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yopo",
        description="Pruning at initialization with once-only, data-free saliency (You Only Prune Once). "
        "Compute a saliency once, then derive masks at any exact sparsity.",
    )
    parser.add_argument("--version", action="version", version=f"yopo {__import__('yopo').__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more output (-v: debug lines); progress bars show on a terminal only")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, modname in COMMANDS.items():
        importlib.import_module(modname).add_parser(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..core.progress import configured

    try:
        with configured(args.verbose - args.quiet):  # log lines and progress bars (yopo.core.progress)
            return int(args.run(args) or 0)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"yopo {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
