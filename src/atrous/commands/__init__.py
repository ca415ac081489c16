"""Subcommands of the ``atrous`` CLI that live beside the features they expose.

Each module here defines ``register(subparsers)``, adding its parser with ``set_defaults(func=...)``;
registration imports only argparse, the work imports happen inside the handler.
"""
import importlib

COMMAND_MODULES = ("summary", "scan", "explain", "run", "export", "segment")


def register_all(subparsers):
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue  # that command is not part of this build
            raise
        module.register(subparsers)
