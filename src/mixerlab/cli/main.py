"""Entry point of the ``mixerlab`` command: imports every command module, then runs the app."""

from __future__ import annotations

import importlib
import pkgutil

import mixerlab.cli as _cli
from mixerlab.cli.app import app


def main() -> None:
    for info in pkgutil.iter_modules(_cli.__path__):
        if info.name not in {"app", "main"} and not info.name.startswith("_"):
            importlib.import_module(f"mixerlab.cli.{info.name}")
    app()


if __name__ == "__main__":
    main()
