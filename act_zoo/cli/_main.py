"""Parser assembly and the error boundary of the ``act-zoo`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import select
import sys
from collections.abc import Sequence

logger = logging.getLogger("act_zoo.cli")

# subcommand modules, in the order ``act-zoo --help`` lists them; each defines
# ``register(subparsers, common)`` and sets ``func`` on its parser
COMMANDS: tuple[str, ...] = (
    "act_zoo.cli.models",   # list, info, download, convert
    "act_zoo.cli.extract",  # extract
    "act_zoo.cli.infer",    # predict, evaluate
    "act_zoo.cli.train",    # train
    "act_zoo.cli.recipes",  # recipes
    "act_zoo.cli.data",     # data check
    "act_zoo.cli.segment",  # segment
    "act_zoo.cli.show",     # show
    "act_zoo.cli.ops",      # ops
)


class CLIError(Exception):
    """A failure to report as one line, exit code 1."""


def _common_options() -> argparse.ArgumentParser:
    """Options every subcommand accepts after its name too. ``SUPPRESS`` keeps a value given
    before the subcommand from being reset by the subparser's default."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log progress details")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars, warnings only")
    return common


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    p = argparse.ArgumentParser(prog="act-zoo", description="ACT point-cloud Transformers: models, weights, features.")
    p.add_argument("--version", action="version", version=f"act-zoo {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", default=False, help="log progress details")
    p.add_argument("-q", "--quiet", action="store_true", default=False, help="no progress bars, warnings only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    for module in COMMANDS:
        importlib.import_module(module).register(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = int(args.func(args) or 0)
        # flush here, not at interpreter exit: block-buffered output into a pipe whose reader
        # has gone would otherwise end in "Exception ignored ... BrokenPipeError" and exit 120
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if _stdout_is_broken():  # the reader stopped early (`act-zoo ... | head`): end quietly, as Unix tools do
            return 141  # 128 + SIGPIPE
        return _report(args, exc)
    except (CLIError, ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError, OSError) as exc:
        return _report(args, exc)


def _report(args: argparse.Namespace, exc: BaseException) -> int:
    """One error line (and up to 11 indented detail lines) on stderr; exit code 1."""
    if args.verbose:
        logger.exception("failed")
    text = _worker_error(str(exc).strip())
    lines = text.splitlines()
    print(f"act-zoo {args.command}: error: {lines[0] if lines else type(exc).__name__}", file=sys.stderr)
    if len(lines) > 1:
        print("\n".join("  " + line for line in lines[1:12]), file=sys.stderr)
    return 1


_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.")


def _worker_error(text: str) -> str:
    """torch re-raises an error of a ``DataLoader`` worker as 'Caught X in DataLoader worker
    process N.' followed by the worker's traceback, whose last line is the error itself
    (``module.X: message``): that message is what to show."""
    lines = text.splitlines()
    if not (_WORKER_ERROR.match(text) and len(lines) > 2 and "Traceback" in lines[1]):
        return text
    kind, sep, message = lines[-1].strip().partition(": ")
    if not sep or not re.fullmatch(r"[\w.]+", kind):
        return text
    return f"{message} (in a DataLoader worker)"


def _stdout_is_broken() -> bool:
    """True when stdout is a pipe whose reader has gone; stdout is then pointed at os.devnull so
    that the interpreter's final flush does not complain again."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    if hasattr(select, "poll"):  # POSIX: a pipe without a reader polls as an error
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        broken = any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    else:
        try:
            sys.stdout.flush()
            broken = False
        except BrokenPipeError:
            broken = True
    if broken:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
        except OSError:
            pass
    return broken
