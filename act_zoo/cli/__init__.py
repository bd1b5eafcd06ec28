"""The ``act-zoo`` command: find models, fetch and convert weights, extract features, train.

Each subcommand lives in its own module of this package and registers itself through
:data:`COMMANDS`; :func:`main` parses, configures logging and turns library errors into one
clear line on stderr with a non-zero exit code (1: the operation failed, 2: bad usage).
``-v/--verbose`` and ``-q/--quiet`` are accepted before or after the subcommand.
"""

from __future__ import annotations

from ._main import COMMANDS, CLIError, build_parser, main

__all__ = ["COMMANDS", "CLIError", "build_parser", "main"]
