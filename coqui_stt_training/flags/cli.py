"""The command line's frame around every tool: parse the tool's flags, prepare them, run, and show a
user's mistake, a file the system refused, or a stop signal as one line instead of a traceback."""

from __future__ import annotations

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
    run_guarded(lambda: job(prepare(config)), config.log_level)


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
