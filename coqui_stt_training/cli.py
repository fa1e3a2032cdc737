"""The command line's frame around every tool: parse the tool's flags, prepare them, run, and show a
user's mistake as one line (`E <message>`, exit status 1) instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from . import log
from .config import Config
from .errors import UserError
from .resolve import prepare


def run_cli(job: Callable[[Config], None], argv: list[str] | None, prog: str, uses: frozenset[str]) -> None:
    """Parse `argv` with the flags of a tool that uses `uses`, then run `job(config)`. Every UserError
    becomes one line on stderr and exit status 1; anything else is a bug and keeps its traceback."""
    config = Config.from_args(argv, prog=prog, uses=uses)
    log.set_level(config.log_level)
    try:
        job(prepare(config))
    except UserError as e:
        log.error(str(e))
        sys.exit(1)
