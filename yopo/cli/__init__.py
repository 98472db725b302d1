"""The ``yopo`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``.

Bad input never ends in a traceback: usage errors (argparse) and the one-line ``ValueError``s of
the library print ``yopo COMMAND: error: ...`` on one line and exit with status 2; warnings print
as one line each (``yopo COMMAND: warning: ...``).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

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


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (argparse prints the usage block, then the error) and a
    did-you-mean for choices (``--mode glob`` -> ``'global'``); subcommand parsers inherit it."""

    def error(self, message):
        line = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {line} (see {self.prog} --help)\n")

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            from ..core.validate import suggest

            allowed = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {allowed})"
                                                 f"{suggest(value, action.choices)}")
        super()._check_value(action, value)


def build_parser(commands=None) -> argparse.ArgumentParser:
    """The ``yopo`` parser. ``commands``: the subcommands whose full parsers are built (importing
    their modules); the others get a stub that only carries their help line. None = all."""
    parser = Parser(
        prog="yopo",
        description="Pruning at initialization with once-only, data-free saliency (You Only Prune Once). "
        "Compute a saliency once, then derive masks at any exact sparsity.",
    )
    parser.add_argument("--version", action="version", version=f"yopo {__import__('yopo').__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more output (-v: debug lines); progress bars show on a terminal only")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
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


def check_device(name: str, flag: str = "--device") -> str:
    """A one-line ``ValueError`` unless ``name`` is a torch device this machine has (``auto`` passes)."""
    if name == "auto":
        return name
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{flag}={name!r} is not a device; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag}={name!r} but CUDA is not available on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{flag}={name!r} but this machine has {torch.cuda.device_count()} CUDA device(s): "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"{flag}={name!r} but MPS is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise ValueError(f"{flag}={name!r}: device type {dev.type!r} is not supported; use cpu, cuda, cuda:N or mps")
    return name


def _one_line(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        text = f"missing key {e.args[0]!r}" if len(str(e.args[0]).split()) == 1 else str(e.args[0])
    elif isinstance(e, OSError) and e.filename is not None:
        text = f"{e.strerror or type(e).__name__}: {e.filename}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command(argv)
    parser = build_parser(set() if command is None else {command})
    args = parser.parse_args(argv)
    # the words after the command (e.g. `yopo train` alone runs the demo comparison)
    args.command_argv = argv[argv.index(command) + 1:] if command in argv else []
    from ..core.progress import configured

    prefix = f"yopo {args.command}"

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prefix}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            with configured(args.verbose - args.quiet):  # log lines and progress bars (yopo.core.progress)
                return int(args.run(args) or 0)
        except (ValueError, TypeError, KeyError, OSError) as e:
            print(f"{prefix}: error: {_one_line(e)}", file=sys.stderr)
            return 2
        except MemoryError:
            print(f"{prefix}: error: out of memory (a model, batch or budget too large for this machine)",
                  file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
