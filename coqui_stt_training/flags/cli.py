"""The command line's frame around every tool: parse the tool's flags, prepare them, run, and show a
user's mistake, a file the system refused, or a stop signal as one line instead of a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from collections.abc import Callable

from ..system import log
from ..system.errors import UserError, os_error_line
from ..system.signals import Stopped, stop_on_signals
from .config import Config
from .prepare import prepare


def run_cli(job: Callable[[Config], None], argv: list[str] | None, prog: str, uses: frozenset[str]) -> None:
    """Parse `argv` with the flags of a tool that uses `uses`, then run `job(config)`. A UserError, or an
    OSError the job did not explain (a full disk, a read-only folder: the system's words and the file),
    becomes one line `E <message>` on stderr and exit status 1; a stop signal ends with one line saying
    what it interrupted and what was kept, exit status 0 (128 + the signal for a second one, which stops
    at once). With --log_level 0 the traceback follows the line. Anything else is a bug and keeps its
    traceback."""
    config = Config.from_args(argv, prog=prog, uses=uses)
    log.set_level(config.log_level)
    given = given_flags(argv, prog, uses)
    run_guarded(lambda: job(prepare(config, given)), config.log_level)


def given_flags(argv: list[str] | None, prog: str | None = None, uses: frozenset[str] | None = None) -> frozenset[str]:
    """The flags the command line sets, whatever their values (a warning about a flag is for one the user gave).
    argparse fills in a default only where the namespace lacks the attribute: one that still holds the marker
    was not given. Arguments a tool adds to Config's are passed over."""
    unset = object()
    namespace = argparse.Namespace(**{f.name: unset for f in dataclasses.fields(Config)})
    parsed, _ = Config.parser(prog, uses).parse_known_args(argv, namespace)
    return frozenset(name for name, value in vars(parsed).items() if value is not unset)


def run_guarded(job: Callable[[], object], log_level: int) -> None:
    """Run `job` as run_cli runs a tool (the frame of tools whose flags are their own: import_cv)."""
    with stop_on_signals():
        try:
            job()
        except Stopped as stop:
            stop.report()
            sys.exit(stop.exit_status)
        except UserError as e:
            fail(str(e), log_level)
        except OSError as e:
            fail(os_error_line(e), log_level)


def fail(message: str, log_level: int) -> None:
    log.error(message)
    if log_level == log.DEBUG:
        traceback.print_exc()
    sys.exit(1)
