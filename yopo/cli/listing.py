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
    import shutil
    import textwrap

    from ..core.registry import available_methods, get_method

    rows = []
    for name in available_methods():
        m = get_method(name)
        desc = m.description
        for tag in (" (data-free)", " (needs data)"):  # the kind has its own column
            desc = desc.removesuffix(tag)
        opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(m.config))
        rows.append((name, "data-free" if m.data_free else "needs data", desc, opts))
    w_name = max(len("METHOD"), *(len(r[0]) for r in rows))
    w_kind = max(len("DATA"), *(len(r[1]) for r in rows))
    indent = " " * (w_name + w_kind + 4)
    width = max(60, shutil.get_terminal_size((100, 24)).columns)
    wrap = dict(width=width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)
    print(f"{'METHOD':{w_name}s}  {'DATA':{w_kind}s}  DESCRIPTION / options")
    for name, kind, desc, opts in rows:
        print(f"{name:{w_name}s}  {kind:{w_kind}s}  " + textwrap.fill(desc, **wrap)[len(indent):])
        if opts:
            print(textwrap.fill(f"options: {opts}", **dict(wrap, subsequent_indent=indent + "  ")))
    return 0


def run_models(args) -> int:
    from ..models import available_models

    print("\n".join(available_models()))
    return 0
