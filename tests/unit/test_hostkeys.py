"""The host-key guard parses ssh arguments as OpenSSH does: every spelling of "checking off" is refused."""

from __future__ import annotations

import shlex

import pytest

from runner.errors import InputError
from runner.health import hostkeys
from runner.health.targets import target_from_vars

REFUSED = [
    "-o StrictHostKeyChecking=no",
    "-o 'StrictHostKeyChecking no'",
    "-oStrictHostKeyChecking=off",
    "-o stricthostkeychecking=FALSE",
    "-o 'StrictHostKeyChecking = off'",
    "-qo StrictHostKeyChecking=no",  # bundled with a flag, value in the next word
    "-4qoStrictHostKeyChecking=no",  # bundled, value in the same word
    "-o StrictHostKeyChecking=accept-new",
    "-o UserKnownHostsFile=/dev/null",
    "-o 'UserKnownHostsFile ~/.ssh/kh /dev/null'",
    "-o GlobalKnownHostsFile=/dev/null",
    '-o StrictHostKeyChecking="no"',
    "-p 22 -l pi -o ControlMaster=auto -o StrictHostKeyChecking=no",
]

ACCEPTED = [
    "",
    "-o StrictHostKeyChecking=yes",
    "-o StrictHostKeyChecking=ask",
    "-o UserKnownHostsFile=/var/tmp/kh -o StrictHostKeyChecking=yes",
    "-o ControlPersist=60s -o ServerAliveInterval=5",
    "-l no -p 2222",  # 'no' as the value of another option is not a host-key setting
    "-o ProxyCommand='ssh -W %h:%p jump'",
    "-F none",
]


@pytest.mark.parametrize("args", REFUSED)
def test_refused_spellings(args):
    with pytest.raises(hostkeys.HostKeyCheckingOff):
        hostkeys.check_args(shlex.split(args))


@pytest.mark.parametrize("args", ACCEPTED)
def test_accepted_arguments(args):
    hostkeys.check_args(shlex.split(args))


def test_an_ssh_config_file_given_with_F_is_read(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *\n  # StrictHostKeyChecking no (a comment)\n  StrictHostKeyChecking  no\n")
    with pytest.raises(hostkeys.HostKeyCheckingOff, match="-F"):
        hostkeys.check_args(["-F", str(cfg)])
    cfg.write_text("Host *\n  UserKnownHostsFile=/dev/null\n")
    with pytest.raises(hostkeys.HostKeyCheckingOff):
        hostkeys.check_args([f"-F{cfg}"])
    cfg.write_text("Host *\n  StrictHostKeyChecking yes\n")
    hostkeys.check_args(["-F", str(cfg)])


@pytest.mark.parametrize("args", ["-o", "-o StrictHostKeyChecking no", "-o StrictHostKeyChecking = no"])
def test_an_option_without_its_value_is_bad_input(args):
    # ssh itself refuses these ("missing argument"); the guard says how to write them
    with pytest.raises(hostkeys.BadSshArguments, match="-o"):
        hostkeys.check_args(shlex.split(args))


@pytest.mark.parametrize(
    "hv",
    [
        {"ansible_ssh_common_args": "-o 'StrictHostKeyChecking no'"},
        {"ansible_ssh_extra_args": "-o UserKnownHostsFile=/dev/null"},
        {"ansible_ssh_args": "-C -o ControlMaster=auto -o StrictHostKeyChecking=off"},
        {"ansible_host_key_checking": False},
        {"ansible_ssh_host_key_checking": "no"},
    ],
)
def test_inventory_variables_that_turn_checking_off_are_refused(hv):
    with pytest.raises(InputError, match="host keys are checked") as err:
        target_from_vars("rpi1", hv)
    assert "host rpi1" in str(err.value) and next(iter(hv)) in str(err.value)


def test_unbalanced_quotes_name_the_variable():
    with pytest.raises(InputError, match="ansible_ssh_common_args"):
        target_from_vars("rpi1", {"ansible_ssh_common_args": "-o 'StrictHostKeyChecking=yes"})


def test_ansible_ssh_args_are_checked_but_not_passed_to_the_probe():
    t = target_from_vars(
        "rpi1", {"ansible_ssh_args": "-C -o ControlMaster=auto", "ansible_host_key_checking": True}
    )
    assert t.extra_args == ()
