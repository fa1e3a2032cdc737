"""Helpers for tests that run the command-line entry points in-process."""

import hashlib


def run(main, argv, capsys):
    """Run an entry point; return (exit status, stdout + stderr)."""
    try:
        main(argv)
        status = 0
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out + out.err


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
