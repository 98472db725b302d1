"""Built-in scoring methods; importing this package registers them."""
from . import basic  # noqa: F401
