"""Frozen dataclasses are the single source of configuration; CLI flags are generated from them.

A field's ``metadata`` may carry ``help`` and ``choices``. Booleans become ``--flag/--no-flag``
pairs (never ``type=bool``, which parses "False" as true); ``tuple[str, ...]`` fields take several
values.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING


def opt(default, help: str = "", choices=None, *, low=None, high=None, check=None, **kw):
    """Shorthand for a dataclass field with CLI metadata and its validation rule: ``choices``
    (allowed values), ``low``/``high`` (inclusive numeric range) or ``check(name, value)`` (a custom
    validator). :func:`validate_fields` enforces them, so a rule is declared once, here."""
    md = {"help": help}
    if choices is not None:
        md["choices"] = list(choices)
    if low is not None:
        md["low"] = low
    if high is not None:
        md["high"] = high
    if check is not None:
        md["check"] = check
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=md, **kw)
    return dataclasses.field(default=default, metadata=md, **kw)


def validate_fields(obj) -> None:
    """Check every field of dataclass instance ``obj`` against the rule declared with :func:`opt`
    (and its type for int/float/bool/str fields); raise a one-line error naming the field, the bad
    value and what is allowed. ``None`` passes for fields whose type admits it."""
    from .validate import check_choice, check_float, check_int

    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        t = _type_name(f)
        base = t.split("|")[0]
        if v is None and "None" in t:
            continue
        md = f.metadata
        if "check" in md:
            md["check"](f.name, v)
            continue
        if base == "bool":
            if not isinstance(v, bool):
                raise TypeError(f"{f.name}={v!r} must be a bool (True/False)")
        elif base == "int":
            check_int(f.name, v, md.get("low"), md.get("high"))
        elif base == "float":
            check_float(f.name, v, md.get("low"), md.get("high"))
        elif base == "str" and not isinstance(v, str):
            raise TypeError(f"{f.name}={v!r} must be a string")
        if "choices" in md:
            check_choice(f.name, v, md["choices"])


def _type_name(f) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return t.replace(" ", "")


def add_dataclass_args(parser: argparse.ArgumentParser, cls, *, skip=(), prefix: str = "",
                       group: str | None = None) -> None:
    target = parser.add_argument_group(group) if group else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        help_ = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        t = _type_name(f)
        dest = prefix + f.name
        required = f.default is MISSING and f.default_factory is MISSING
        if t.split("|")[0] == "bool":  # also "bool | None" (None = use the recipe's choice)
            target.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                                help=help_)
        elif t.startswith("tuple[") or t.startswith("list["):
            inner = t[t.index("[") + 1 :].split(",")[0].rstrip("]")
            # repeatable: "--set a=1 --set b=2" keeps both (the plain "store" would keep only b=2)
            many = dict(action="extend", default=list(default)) if not default else dict(default=default)
            target.add_argument(flag, dest=dest, nargs="*", type={"int": int, "float": float}.get(inner, str),
                                choices=choices, help=help_ + " (several values allowed)", **many)
        else:
            base = t.split("|")[0]
            conv = {"int": int, "float": float, "str": str}.get(base, str)
            nullable = "None" in t
            kwargs = dict(dest=dest, default=default, choices=choices, required=required,
                          help=help_ + ("" if required else f" (default: {default})"))
            kwargs["type"] = (lambda v, c=conv: None if v.lower() == "none" else c(v)) if nullable else conv
            target.add_argument(flag, **kwargs)


def from_args(cls, args: argparse.Namespace, *, prefix: str = "", **overrides):
    """Build ``cls`` from parsed args (fields not on the namespace keep their defaults)."""
    kw = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if hasattr(args, key):
            v = getattr(args, key)
            if isinstance(v, list):
                v = tuple(v)
            kw[f.name] = v
    kw.update(overrides)
    return cls(**kw)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_options(cls, items) -> dict:
    """``["k=v", ...]`` -> {k: v converted to the field type of dataclass ``cls``}. Booleans accept
    true/false/yes/no/on/off/1/0 and nothing else (so "False" never parses as true)."""
    fields = {f.name: _type_name(f) for f in dataclasses.fields(cls)}
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ValueError(f"option {item!r} must be KEY=VALUE with KEY one of {sorted(fields)}")
        t = fields[key].split("|")[0]
        if t == "bool":
            low = value.strip().lower()
            if low not in _TRUE + _FALSE:
                raise ValueError(f"option {key}={value!r} is not a boolean; use one of {list(_TRUE + _FALSE)}")
            out[key] = low in _TRUE
        elif t.startswith("tuple["):
            inner = t[6:].split(",")[0].rstrip("]")
            conv = {"int": int, "float": float}.get(inner, str)
            out[key] = tuple(conv(v) for v in value.split(",") if v)
        else:
            conv = {"int": int, "float": float}.get(t, str)
            try:
                out[key] = None if value.lower() == "none" and "None" in fields[key] else conv(value)
            except ValueError:
                raise ValueError(f"option {key}={value!r} must be of type {t}") from None
    return out
