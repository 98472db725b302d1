"""Frozen dataclasses are the single source of configuration; CLI flags and config-file tables are
both read into them.

A field is declared once with :func:`opt`: its default, help text and validation rule (``choices``,
``low``/``high``, ``check``). The dataclass validates itself in ``__post_init__`` with
:func:`validate_fields`, so the rule holds whichever way the object is built:

* **CLI**: :func:`add_dataclass_args` generates the flags (``--name-with-dashes``; booleans become
  ``--flag/--no-flag`` pairs, never ``type=bool``, which parses "False" as true; ``tuple`` fields
  take several values, repeatable) and :func:`from_args` builds the object;
* **config files** (sweep tables): :func:`from_mapping` (unknown keys are a one-line error listing
  the allowed ones, strings are converted with the same rules as CLI strings);
* **KEY=VALUE lists** (``--method-opt``): :func:`parse_options`, the same conversion.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import MISSING


def opt(default, help: str = "", choices=None, *, low=None, high=None, low_open: bool = False, check=None,
        min_items: int | None = None, positional: bool = False, **kw):
    """A dataclass field with CLI metadata and its validation rule: ``choices`` (allowed values; for
    a tuple, of every entry), ``low``/``high`` (inclusive numeric range, of every entry of a tuple;
    ``low_open=True`` excludes ``low``), ``min_items`` (a tuple's least length) or
    ``check(name, value)`` (a custom validator that raises a one-line error, instead of the type and
    range rules). :func:`validate_fields` enforces them, so a rule is declared once, here.
    ``positional``: a positional CLI argument (``default=MISSING``: a required one)."""
    md = {"help": help}
    if min_items is not None:
        md["min_items"] = min_items
    if choices is not None:
        md["choices"] = list(choices)
    if low is not None:
        md["low"] = low
        md["low_open"] = low_open
    if high is not None:
        md["high"] = high
    if check is not None:
        md["check"] = check
    if positional:
        md["positional"] = True
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
        if "min_items" in md and (not isinstance(v, (tuple, list)) or len(v) < md["min_items"]):
            raise ValueError(f"{f.name}={v!r} must list at least {md['min_items']} value(s)")
        if "check" in md:
            md["check"](f.name, v)
            continue
        if base == "bool":
            if not isinstance(v, bool):
                raise TypeError(f"{f.name}={v!r} must be a bool (True/False; on the CLI --{_flag(f.name)} / "
                                f"--no-{_flag(f.name)})")
        elif base == "int":
            check_int(f.name, v, md.get("low"), md.get("high"))
            if md.get("low_open") and v == md.get("low"):
                raise ValueError(f"{f.name}={v!r} is out of range; allowed: integers > {md['low']}")
        elif base == "float":
            check_float(f.name, v, md.get("low"), md.get("high"), low_open=bool(md.get("low_open")))
        elif base == "str" and not isinstance(v, str):
            raise TypeError(f"{f.name}={v!r} must be a string")
        elif base.startswith("tuple["):
            if not isinstance(v, tuple):
                raise TypeError(f"{f.name}={v!r} must be a tuple")
            inner = _inner(base)
            for item in v:  # the range rule holds for every entry
                if inner == "int":
                    check_int(f"{f.name} entry", item, md.get("low"), md.get("high"))
                elif inner == "float":
                    check_float(f"{f.name} entry", item, md.get("low"), md.get("high"),
                                low_open=bool(md.get("low_open")))
                elif inner == "str" and not isinstance(item, str):
                    raise TypeError(f"{f.name} entry {item!r} must be a string")
        if "choices" in md:
            if base.startswith("tuple["):
                for item in v:
                    check_choice(f"{f.name} entry", item, md["choices"])
            else:
                check_choice(f.name, v, md["choices"])


def _type_name(f) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return t.replace(" ", "")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]


# ------------------------------------------------------------------------------------------------
# conversion: one rule for CLI strings, KEY=VALUE options and config-file values

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_SCALARS = {"int": int, "float": float, "str": str}


def _inner(t: str) -> str:
    return t[t.index("[") + 1:].split(",")[0].rstrip("]")


def _scalar_from_string(name: str, t: str, value: str):
    if t == "bool":
        low = value.strip().lower()
        if low not in _TRUE + _FALSE:
            raise ValueError(f"{name}={value!r} is not a boolean; use one of {list(_TRUE + _FALSE)}")
        return low in _TRUE
    conv = _SCALARS.get(t, str)
    try:
        return conv(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} must be of type {t}") from None


def convert(f, value, name: str | None = None):
    """``value`` (a string from the command line or a file, or an already typed value) as the type
    of dataclass field ``f``: strings are parsed (``none`` -> None for optional fields; booleans
    only from true/false/yes/no/on/off/1/0; tuples from comma-separated strings), lists become
    tuples, ints pass for floats. Other values are left for the dataclass's own validation."""
    name = name or f.name
    t = _type_name(f)
    base = t.split("|")[0]
    if isinstance(value, str) and value.strip().lower() == "none" and "None" in t:
        return None
    if base.startswith(("tuple[", "list[")):
        inner = _inner(base)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if isinstance(value, (list, tuple)):
            return tuple(_scalar_from_string(name, inner, v) if isinstance(v, str) and inner != "str" else
                         float(v) if inner == "float" and isinstance(v, int) and not isinstance(v, bool) else v
                         for v in value)
        return value
    if isinstance(value, str) and base in ("int", "float", "bool"):
        return _scalar_from_string(name, base, value)
    if base == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_mapping(cls, mapping: Mapping, *, what: str | None = None, base=None, renamed: Mapping | None = None):
    """Build dataclass ``cls`` from a mapping (a config-file table): unknown keys are a one-line
    error naming them and the allowed ones (``renamed`` maps old key names to a hint), values are
    converted by :func:`convert` and the dataclass validates itself. ``base``: an instance whose
    values the mapping overrides (default: the dataclass defaults)."""
    what = what or cls.__name__
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{what} must be a table of KEY = VALUE; got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    unknown = [k for k in mapping if k not in fields]
    if unknown:
        hints = [f"{k} -> {renamed[k]}" for k in unknown if renamed and k in renamed]
        raise ValueError(f"{what}: unknown key(s) {sorted(unknown)}"
                         + (f" (renamed: {', '.join(hints)})" if hints else "")
                         + f"; allowed: {sorted(fields)}")
    kw = {k: convert(fields[k], v) for k, v in mapping.items()}
    return dataclasses.replace(base, **kw) if base is not None else cls(**kw)


def to_mapping(obj) -> dict:
    """The fields of dataclass instance ``obj`` as a JSON-ready dict (tuples as lists)."""
    return {f.name: (list(v) if isinstance(v := getattr(obj, f.name), tuple) else v)
            for f in dataclasses.fields(obj) if not f.name.startswith("_")}


# ------------------------------------------------------------------------------------------------
# CLI


def add_dataclass_args(parser: argparse.ArgumentParser, cls, *, skip=(), prefix: str = "",
                       group: str | None = None, explicit_only: bool = False,
                       aliases: Mapping[str, tuple[str, ...]] | None = None) -> None:
    """One flag per field of ``cls`` (``--field-name``). ``explicit_only``: only the flags given on
    the command line appear on the parsed namespace (defaults are shown in the help but not set),
    so a caller can apply them over another base (a preset, a family's stored settings).
    ``aliases``: extra flag spellings per field name (e.g. ``{"allocation": ("--mode",)}``)."""
    target = parser.add_argument_group(group) if group else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        flag = "--" + _flag(prefix + f.name)
        flags = [flag, *((aliases or {}).get(f.name, ()))]
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        help_ = f.metadata.get("help", "").replace("%", "%%")  # argparse %-formats help texts
        choices = f.metadata.get("choices")
        t = _type_name(f)
        base = t.split("|")[0]
        dest = prefix + f.name
        required = f.default is MISSING and f.default_factory is MISSING
        shown = "" if required else f" (default: {list(default) if isinstance(default, tuple) else default})"
        given_default = argparse.SUPPRESS if explicit_only else default
        if f.metadata.get("positional"):
            target.add_argument(dest, help=help_, type=lambda v, f=f: convert(f, v), choices=choices,
                                **({} if required else {"nargs": "?", "default": given_default}))
        elif base == "bool":  # also "bool | None" (None = use the recipe's choice)
            target.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, default=given_default,
                                help=help_ + shown)
        elif base.startswith(("tuple[", "list[")):
            inner = _inner(base)
            # repeatable and additive (--exclude a b --exclude c); the default is filled in by
            # from_args, not by argparse (which would append to it)
            target.add_argument(*flags, dest=dest, nargs="*", action="extend",
                                type=lambda v, n=f.name, i=inner: _scalar_from_string(n, i, v),
                                default=argparse.SUPPRESS, choices=choices,
                                help=help_ + " (several values; repeatable)" + shown)
        else:
            kwargs = dict(dest=dest, default=given_default, choices=choices, required=required,
                          help=help_ + shown, type=lambda v, f=f: convert(f, v))
            target.add_argument(*flags, **kwargs)


def explicit(cls, args: argparse.Namespace, *, prefix: str = "") -> dict:
    """{field: value} of the fields of ``cls`` present on ``args`` (with ``explicit_only`` flags:
    the ones given on the command line)."""
    out = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if hasattr(args, key):
            v = getattr(args, key)
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def from_args(cls, args: argparse.Namespace, *, prefix: str = "", base=None, **overrides):
    """Build ``cls`` from parsed args: the fields on the namespace over ``base`` (an instance, or a
    mapping of field values; default: the dataclass defaults), then ``overrides``. Validated by the
    dataclass itself."""
    kw = explicit(cls, args, prefix=prefix)
    kw.update(overrides)
    if isinstance(base, Mapping):
        kw = {**base, **kw}
        base = None
    try:
        return dataclasses.replace(base, **kw) if base is not None else cls(**kw)
    except (ValueError, TypeError) as e:  # name the flag the user typed, not the field behind it
        msg = str(e)
        for f in dataclasses.fields(cls):
            if msg.startswith(f"{f.name}="):
                flag = "--" + (prefix + f.name).replace("_", "-")
                raise type(e)(flag + msg[len(f.name):]) from None
        raise


def parse_options(cls, items) -> dict:
    """``["k=v", ...]`` -> {k: v converted to the field type of dataclass ``cls``} (the rules of
    :func:`convert`: booleans accept true/false/yes/no/on/off/1/0 and nothing else, so "False"
    never parses as true; tuples are comma-separated)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ValueError(f"option {item!r} must be KEY=VALUE with KEY one of {sorted(fields)}")
        try:
            out[key] = convert(fields[key], value)
        except ValueError as e:
            raise ValueError(f"option {e}") from None
    return out


def sparsity_rule(name: str, value) -> None:
    """``opt(check=sparsity_rule)``: a float in [0, 1) (the one definition of sparsity)."""
    from .validate import check_sparsity

    check_sparsity(value, name)
