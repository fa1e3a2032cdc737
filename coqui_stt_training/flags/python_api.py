"""Coqui's Python API, as its notebooks use it: one process-wide configuration, set from keywords, read and
assigned through `Config`, and library calls (`train()`, `test()`) that run what the command line runs.

    from coqui_stt_training.util.config import initialize_globals_from_args, Config
    initialize_globals_from_args(alphabet_config_path="alphabet.txt", train_files=["train.csv"], epochs=3)
    Config.epochs = 5              # takes effect for the next train() or test(), as in Coqui
    from coqui_stt_training.train import train
    train()

Keywords are the flags' names, checked as the command line checks them (type, range, choices) before
anything is read; the values then go through the command line's own prepare(). A library call returns
normally, or raises a UserError whose message is the one line the command line would print; in Jupyter
and in scripts that line is what the user sees, not a traceback. A stop signal (Ctrl-C, the notebook's
interrupt) stops cleanly as on the command line, then raises StoppedBySignal, a KeyboardInterrupt, so that
a script does not go on to its next step.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..system import log
from ..system.errors import ConfigError, UserError, os_error_line
from ..system.intervals import range_problem
from ..system.signals import Stopped, stop_on_signals, stopping
from .cli import given_flags
from .config import Config, parse_size
from .prepare import apply_threads, prepare

_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


class NotInitializedError(ConfigError, RuntimeError):
    """Config read before initialize_globals_from_args (a RuntimeError, as Coqui raised)."""


class UnknownOptionError(ConfigError, AttributeError):
    """A configuration option that does not exist (an AttributeError too, so hasattr() is False)."""


class StoppedBySignal(KeyboardInterrupt):
    """A library call that a stop signal ended cleanly: the log has said what was kept, and the script or
    cell must not go on to its next step. Shown without a traceback."""


def initialize_globals_from_args(**flags: Any) -> None:
    """Set the process-wide configuration from keywords named as the flags (`train_files=["a.csv"]`), with
    the command line's defaults for the rest; derive what the command line derives (checkpoint
    directories, n_hidden from the source checkpoint's flags.txt, --auto_input_dataset's split)."""
    show_user_errors_as_one_line()
    _set_current(config_from_keywords(flags), frozenset(flags))


def initialize_globals_from_instance(config: Config) -> None:
    """Use `config` (a Config already filled in) as the process-wide configuration."""
    show_user_errors_as_one_line()
    _set_current(dataclasses.replace(config))


def initialize_globals_from_cli(argv: list[str] | None = None) -> None:
    """The process-wide configuration from the command line (sys.argv[1:] by default)."""
    show_user_errors_as_one_line()
    _set_current(Config.from_args(argv), given_flags(argv))


def _set_current(config: Config, given: frozenset[str] | None = None) -> None:
    log.set_level(config.log_level)
    _current[0] = prepare(config, given)


_current: list[Config | None] = [None]


def current() -> Config:
    config = _current[0]
    if config is None:
        show_user_errors_as_one_line()
        raise NotInitializedError("Global configuration not yet initialized.")
    return config


class GlobalConfig:
    """What `Config` is in Coqui's notebooks: attribute access to the process-wide configuration.
    Reading before initialisation, or an option that does not exist, is a one-line error; assigning an
    option checks the value as the keyword would be checked."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and IPython's display probe for these
            raise AttributeError(name)
        config = current()
        if name not in _FIELDS and not callable(getattr(Config, name, None)):
            raise UnknownOptionError(f"Configuration option {name} not found in config.{_suggestion(name)}")
        return getattr(config, name)

    def __setattr__(self, name: str, value: Any) -> None:
        config = current()
        if name not in _FIELDS:
            raise UnknownOptionError(f"Configuration option {name} not found in config.{_suggestion(name)}")
        setattr(config, name, checked_value(name, value))

    def __dir__(self) -> list[str]:
        return sorted(_FIELDS) + ["to_json"]

    def __repr__(self) -> str:
        return "Config(not yet initialized)" if _current[0] is None else f"Config({_current[0].to_json()})"


def config_from_keywords(flags: dict[str, Any]) -> Config:
    """A Config from keywords, every value checked against its flag; the first problem is a ConfigError."""
    unknown = [name for name in flags if name not in _FIELDS]
    if unknown:
        raise ConfigError(f"initialize_globals_from_args: unknown flag {unknown[0]!r}{_suggestion(unknown[0])}")
    return Config(**{name: checked_value(name, value) for name, value in flags.items()})


def checked_value(name: str, value: Any) -> Any:
    """`value` as flag `name` holds it: a list flag takes a list of file names (a path is taken as its
    text), a bool a bool, a number a number in the flag's range, a size a number of bytes or "12G"."""
    f = _FIELDS[name]
    kind, given = str(f.type), f"{name}={value!r}"
    if f.metadata.get("list"):
        if isinstance(value, str | os.PathLike):
            raise ConfigError(f"{given}: must be a list, e.g. {name}=[{os.fspath(value)!r}]")
        if value is None:
            return None
        if not isinstance(value, list | tuple) or not all(isinstance(v, str | os.PathLike) for v in value):
            raise ConfigError(f"{given}: must be a list of file names")
        return [os.fspath(v) for v in value]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{given}: must be True or False")
        return value
    if f.metadata.get("size") and isinstance(value, str):
        try:
            value = parse_size(value)
        except Exception:
            raise ConfigError(f"{given}: must be a number of bytes or a size such as '512M' or '12G'") from None
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind == "int" and value != int(value)):
            raise ConfigError(f"{given}: must be {'an integer' if kind == 'int' else 'a number'}")
        value = int(value) if kind == "int" else float(value)
        problem = range_problem(value, f.metadata.get("valid"))
        if problem:
            raise ConfigError(f"{given}: {problem}")
        return value
    if value is None and kind == "str | None":
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{given}: must be a string")
    value = os.fspath(value)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{given}: must be one of {', '.join(choices)}")
    return value


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, _FIELDS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def run_library_call(job: Callable[[Config], None]) -> None:
    """Run a tool's job on (a copy of) the process-wide configuration, as the command line would: a later
    call sees the configuration as the user left it, not as the job changed it."""
    show_user_errors_as_one_line()
    config = dataclasses.replace(current())
    log.set_level(config.log_level)
    apply_threads(config)
    with stop_on_signals():
        try:
            job(config)
        except Stopped as stop:
            stop.report()
            raise StoppedBySignal(stop.signal_name) from None
        except OSError as e:  # one line, as the command line shows it
            raise UserError(os_error_line(e)) from e
        if stopping():  # the training loop honoured a signal and saved: the caller must not go on
            raise StoppedBySignal()


_installed = [False]


def show_user_errors_as_one_line() -> None:
    """A UserError that reaches the top of a script or a notebook cell is shown as the command line shows
    it, `E <message>`, instead of a traceback, and a StoppedBySignal (already reported) not at all; every
    other exception keeps its traceback."""
    if _installed[0]:
        return
    _installed[0] = True
    shell = _ipython()
    if shell is not None:
        shell.set_custom_exc((UserError, StoppedBySignal), _show_in_ipython)
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        if isinstance(error, UserError):
            log.error(str(error))
        elif not isinstance(error, StoppedBySignal):
            previous(kind, error, trace)

    sys.excepthook = hook


def _ipython() -> Any:
    module = sys.modules.get("IPython")  # never imported here: only a running IPython has one to give
    return module.get_ipython() if module is not None and hasattr(module, "get_ipython") else None


def _show_in_ipython(shell: Any, kind: type, error: BaseException, trace: Any, tb_offset: Any = None) -> None:
    if isinstance(error, UserError):
        print(f"E {error}", file=sys.stderr, flush=True)
