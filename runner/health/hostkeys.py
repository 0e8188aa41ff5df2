"""The host-key guard: refuse SSH arguments that would turn host-key checking off.

The arguments are parsed as OpenSSH parses them (ssh(1) getopt bundling, `-o` values, ssh_config(5)
keyword syntax), not matched as text, so every spelling of the same setting is caught:
`-o StrictHostKeyChecking=no`, `-oStrictHostKeyChecking=off`, `-o "stricthostkeychecking false"`,
`-qo StrictHostKeyChecking = no`, `-o UserKnownHostsFile=/dev/null`, and the same lines in a file given
with `-F`. Pure functions except `ssh_config_options`, which reads the `-F` file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

# ssh(1)'s option letters that take an argument (OpenSSH's getopt string, ssh.c).
_WITH_ARGUMENT = set("bBcDeEFiIJlLmOopPQRSwW")
# StrictHostKeyChecking values that accept an unknown or changed host key without asking a person:
# no/off/false accept anything; accept-new trusts any key it has not seen (edgejar records new boards'
# fingerprints with playbooks/bootstrap.yml instead).
_UNCHECKED = {"no", "off", "false", "accept-new"}
_KEYWORD = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+)(.*?)\s*$")


class HostKeyCheckingOff(ValueError):
    """The arguments turn host-key checking off; the message says which option did."""


class BadSshArguments(ValueError):
    """The arguments cannot be parsed as ssh(1) would (an option without its value)."""


def _options(args: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(option letter, value) for each ssh option that takes a value, with bundling as getopt does it."""
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--" or not arg.startswith("-") or arg == "-":
            continue  # a destination or command word: ssh options come before it, but be lenient
        letters = arg[1:]
        for pos, letter in enumerate(letters):
            if letter not in _WITH_ARGUMENT:
                continue
            value = letters[pos + 1 :]
            if not value:
                if i >= len(args):
                    raise BadSshArguments(f"ssh option -{letter} needs a value")
                value = args[i]
                i += 1
            yield letter, value
            break


def _keyword(line: str) -> tuple[str, str] | None:
    """(lower-case keyword, value) of one ssh_config line or -o value; None for blanks and comments."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    match = _KEYWORD.match(text)
    if match is None:
        return text.lower(), ""
    value = match.group(2)
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return match.group(1).lower(), value


def check_setting(keyword: str, value: str, where: str) -> None:
    """Raise HostKeyCheckingOff when one ssh_config setting disables host-key checking."""
    if keyword == "stricthostkeychecking" and value.strip().lower() in _UNCHECKED:
        raise HostKeyCheckingOff(f"{where}: StrictHostKeyChecking {value.strip()} is refused")
    if keyword in ("userknownhostsfile", "globalknownhostsfile"):
        files = value.split()
        if "/dev/null" in files or "none" in (f.lower() for f in files):
            raise HostKeyCheckingOff(f"{where}: {keyword} {value} is refused (it forgets every host key)")


def ssh_config_options(path: Path) -> list[tuple[str, str]]:
    """The settings of an ssh_config file given with -F (every Host/Match block: a guard is conservative)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []  # ssh itself fails on a missing -F file; nothing is turned off
    except (OSError, UnicodeDecodeError) as exc:
        raise BadSshArguments(f"ssh -F {path}: cannot read it ({exc})") from None
    return [kv for line in text.splitlines() if (kv := _keyword(line)) is not None]


def check_args(args: Sequence[str]) -> None:
    """Raise HostKeyCheckingOff (or BadSshArguments) for ssh arguments that turn host-key checking off."""
    for letter, value in _options(args):
        if letter == "o":
            kv = _keyword(value)
            if kv is not None and not kv[1]:
                # ssh refuses it too ("missing argument"): an unquoted `-o Key value` in a variable
                raise BadSshArguments(f"-o {value}: no value (quote the whole `Key value` after -o)")
            if kv is not None:
                check_setting(*kv, where=f"-o {value}")
        elif letter == "F" and value != "none":
            for keyword, setting in ssh_config_options(Path(value)):
                check_setting(keyword, setting, where=f"-F {value}")
