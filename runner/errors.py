"""Error types shared by every command, with the exit status each one means."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class EdgejarError(Exception):
    """A failure that is not the user's input (a host, a tool, the environment). Exit status 1."""

    exit_status = EXIT_FAILURE


class InputError(EdgejarError):
    """Bad input: a malformed file, an unknown node, an impossible request. Exit status 2.

    The message names the file, the instance or host, and the field where that applies.
    """

    exit_status = EXIT_BAD_INPUT


class NoPlacementError(InputError):
    """No feasible placement exists (or none was found within the search bound)."""
