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


class _Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean for choices (``--mode glob`` -> ``'global'``); subcommand
    parsers inherit it."""

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            from ..core.validate import suggest

            allowed = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {allowed})"
                                                 f"{suggest(value, action.choices)}")
        super()._check_value(action, value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
