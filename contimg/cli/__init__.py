"""The ``contimg`` command line.

Each subcommand lives in its own module in this package and exposes:

``NAME``
    the subcommand's name;
``HELP``
    a one-line description shown by ``contimg --help``;
``register(parser)``
    adds its arguments to an :class:`argparse.ArgumentParser`;
``run(args, settings) -> int``
    does the work and returns the exit status.

Modules are discovered automatically, so adding a subcommand needs no change
here. Heavy libraries (CASA, pyuvdata, Celery) are imported inside ``run`` so
that ``contimg --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import traceback
from types import ModuleType

from contimg import __version__
from contimg.errors import ConfigError, ContimgError

log = logging.getLogger(__name__)


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contimg",
        description="DSA-110 continuum imaging pipeline. Settings come from CONTIMG_* "
        "environment variables (or a TOML file named by CONTIMG_CONFIG).",
    )
    parser.add_argument("--version", action="version", version=f"contimg {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.register(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from contimg.config import load_settings
    from contimg.logging_setup import configure_logging

    from contimg.secrets import install_log_masking, mask_text, settings_secrets

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"contimg: {mask_text(str(exc))}", file=sys.stderr)
        return 2
    # Every contimg process (worker and its children, producer, beat, flower, demo ...)
    # creates products and the database with this mask: not world-readable by default.
    os.umask(int(settings.umask, 8))
    level = settings.log_level
    if args.verbose == 1:
        level = "INFO"
    elif args.verbose >= 2:
        level = "DEBUG"
    configure_logging(level)
    secrets = settings_secrets(settings)
    install_log_masking(secrets)  # URLs' passwords and known secrets never reach a log line
    try:
        return int(args._run(args, settings) or 0)
    except ContimgError as exc:
        log.debug("command failed", exc_info=True)
        print(f"contimg {args.command}: error: {mask_text(str(exc), secrets)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or a library's error: the traceback, masked (exit status 1 as Python's)
        print(mask_text("".join(traceback.format_exception(exc)), secrets), file=sys.stderr, end="")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
