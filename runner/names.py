"""The one rule for every name that becomes a path, a systemd unit, a file or a shell word: experiment
names, instance ids, node (inventory host) names and model file names.

A name is 1 to MAX_LENGTH ASCII letters, digits, `_`, `.` and `-`, and does not start with `.` or `-`.
So it is one safe path component (never `..`, never hidden, no `/`), a valid systemd instance name
(`edgejar-instance@<id>.service` stays far below systemd's 255 characters), a file name on every file
system edgejar writes to, and a shell word that needs no quoting and is never taken for an option.
MAX_LENGTH is 64: room for descriptive names, and `<name>.sqlite3-journal` or a unit name with its
prefix stays short of the 255-byte limits of file and unit names.

The launch role checks the same rule (roles/edgejar_launch/tasks/main.yml: `NAME_PATTERN` below, kept
equal by tests/unit/test_names.py).
"""

from __future__ import annotations

import re

MAX_LENGTH = 64
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
RULE = f"1-{MAX_LENGTH} ASCII letters, digits, '_', '.' or '-', not starting with '.' or '-'"


def is_name(value: object) -> bool:
    """Whether `value` is a string that follows the name rule."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def problem(value: object) -> str | None:
    """Why `value` is not a name (for an error message), or None when it is one."""
    if is_name(value):
        return None
    if isinstance(value, str) and len(value) > MAX_LENGTH:
        return f"must be a name of at most {MAX_LENGTH} characters, got {len(value)}"
    return f"must be a name of {RULE}, got {value!r}"
