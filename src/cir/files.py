"""Reading the user's text files: every way one can fail is one error naming the file (and line).

A missing path, a directory, a file the process may not read and bytes that are not UTF-8 each
raise the caller's error class (DataError for data, ConfigError for configs) instead of an OSError
or UnicodeDecodeError traceback.
"""

from __future__ import annotations

from pathlib import Path

from cir.errors import CirError, DataError


def read_text(path: Path | str, what: str = "file", error: type[CirError] = DataError) -> str:
    """The text of `path`, decoded as UTF-8 (a leading byte-order mark is dropped).

    Args:
        path: the file to read.
        what: what the file is, for the messages (e.g. "fact file").
        error: the CirError subclass to raise.

    Raises:
        CirError: of class `error`, naming the path: missing, a directory, unreadable, or not UTF-8
            (with the line and column of the first bad byte).
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory, expected a {what}")
    if not path.exists():
        raise error(f"{path}: {what} not found")
    try:
        data = path.read_bytes()
    except OSError as problem:
        raise error(f"{path}: cannot read the {what} ({problem.strerror or problem})") from problem
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        line = data.count(b"\n", 0, problem.start) + 1
        column = problem.start - (data.rfind(b"\n", 0, problem.start) + 1) + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[problem.start]:02x} at column {column}); "
            f"save the {what} as UTF-8"
        ) from problem
