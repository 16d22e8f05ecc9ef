"""Errors that reach a person: one line, no traceback, a hint of what to do next."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the environment or the input, reported as one line with ``exit_code``.

    Configuration errors, missing prerequisites and unreachable services are user errors;
    bugs are not (they keep their traceback).
    """

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def not_utf8(what: str, exc: UnicodeDecodeError) -> UserError:
    """The error for a file that is not UTF-8 text: ``what`` names it, the first bad byte
    and its offset say where to look."""
    return UserError(
        f"{what}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
        f"{exc.start}); save it as UTF-8"
    )
