"""Option checks shared by several methods (the general ones are in ``yopo.core.validate``)."""
from __future__ import annotations


def check_bool(name: str, value) -> bool:
    """Booleans must be real bools: a string such as "False" is truthy and must not slip through."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be a bool (True/False; on the CLI --{name.replace('_', '-')} / "
                        f"--no-{name.replace('_', '-')})")
    return value
