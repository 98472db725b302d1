"""``yopo methods`` / ``yopo models``: what is registered."""
from __future__ import annotations

import dataclasses


def add_parser(sub, name):
    if name == "methods":
        p = sub.add_parser("methods", help="list the scoring methods and their options")
        p.set_defaults(run=run_methods)
    else:
        p = sub.add_parser("models", help="list the models available by name")
        p.set_defaults(run=run_models)


def run_methods(args) -> int:
    from ..core.registry import available_methods, get_method

    for name in available_methods():
        m = get_method(name)
        opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(m.config))
        kind = "data-free" if m.data_free else "needs data"
        print(f"{name:12s} {kind:10s} {m.description}" + (f"\n{'':23s} options: {opts}" if opts else ""))
    return 0


def run_models(args) -> int:
    from ..models import available_models

    print("\n".join(available_models()))
    return 0
