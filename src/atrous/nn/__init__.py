"""Modules that own parameters and call ``atrous.functional`` (being written)."""
from . import functional  # noqa: F401
