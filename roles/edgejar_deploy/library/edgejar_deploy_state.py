#!/usr/bin/python
"""The node's side of edgejar_deploy in one round trip: the synced code compared (what no longer ships
removed, the venv's import path fixed) and the model files' checksums read (what no placement needs
pruned). The role runs it through the action plugin of the same name (action_plugins/), which sends the
same check (module_utils/edgejar_deploy_check.py) as a small standard-library program instead of this
module's payload; this module is its documented interface and runs the check itself when called
directly."""

from __future__ import annotations

DOCUMENTATION = r"""
module: edgejar_deploy_state
short_description: Compare a node's runtime and models with what the controller would send
description:
  - "Code (when C(dest) is given): finds the venv's site-packages (C(lib/python3*/site-packages); the
    venv's Python is run only when that is not one directory) and writes the C(.pth) file there that
    puts C(dest) on the import path when its content differs. Fails when site-packages itself holds a
    C(runner) package or module (it would be imported instead). Walks C(dest)/<path> for each of
    C(paths) the way rsync's quick check compares (a file's size and modification time in whole seconds,
    a symlink's target, that a directory exists; names matching C(excludes) left out) and lists every
    path where it differs from C(want) (the controller's tree, from the lookup C(edgejar_tree)). An empty
    list means rsync would send nothing. Removes what the synced paths' parent directories hold besides
    them (C(stale)), for example the modules an earlier deploy sent that no longer ship."
  - "Models: for each of C(model_paths), whether the file exists and its sha256. A multi-GB model is
    read only when it is new or changed: after reading a file, its sha256 is kept in a sidecar beside it
    (C(.<name>.sha256), JSON with the file's size, modification time and inode), trusted while all three
    still match. With C(list_dir), the model files there are listed; with C(prune), those not in
    C(model_paths) are removed with their sidecars."
  - Sending the code and the models is the role's job (rsync, get_url). C(changed) means the C(.pth) file
    was written, stale code was removed or models were pruned (a sidecar is bookkeeping, not a change).
    Supports check mode (reports what it would change, changes and writes nothing).
options:
  venv: {description: The node runtime's venv (with C(dest))., type: path}
  pth_name: {description: The .pth file in the venv's site-packages (with C(dest))., type: str}
  dest: {description: Where the code is synced to on the node (without it no code is checked)., type: path}
  paths: {description: The synced paths under dest., type: list, elements: str, default: []}
  excludes: {description: Name patterns left out (as the lookup's)., type: list, elements: str, default: []}
  want: {description: The controller's tree (edgejar_tree)., type: dict, default: {}}
  model_paths: {description: Absolute paths of the models., type: list, elements: path, default: []}
  remember:
    description: Use and write the sidecars; with C(false) every model is read in full on every run.
    type: bool
    default: true
  list_dir:
    description: Also list the files in this directory that match C(pattern) (a missing one lists nothing).
    type: path
  pattern: {description: Shell pattern of the files C(list_dir) lists., type: str, default: "*.gguf"}
  prune:
    description: Remove the files C(list_dir) lists that are not in C(model_paths), with their sidecars.
    type: bool
    default: false
  stamp:
    description: >-
      The deploy stamp file: it is made to hold C(fingerprint) (written atomically), or removed when
      C(fingerprint) is empty. Bookkeeping for C(runner up), which skips a deploy that would change
      nothing and has launch check this file first (docs/e2e.md); not reported as a change.
    type: path
  fingerprint: {description: What the stamp holds (empty - no stamp)., type: str, default: ""}
author: edgejar
"""

RETURN = r"""
site: {description: The venv's site-packages., type: str, returned: with dest}
pth: {description: The .pth file's content before this run (null - missing)., type: str, returned: with dest}
pth_written: {description: The .pth file was written (or would be, --check)., type: bool, returned: with dest}
stamp_differed: {description: The stamp did not hold the fingerprint., type: bool, returned: with stamp}
differs:
  description: Up to 20 code paths that differ, each with why (missing, extra, or what the node has).
  type: list
  returned: always
n_differs: {description: How many code paths differ in all., type: int, returned: always}
stale:
  description:
    - What the parent directories of C(paths) held besides them on the node (absolute paths), removed
      (or that would be, in check mode); names matching C(excludes) are left alone.
  type: list
  returned: always
files:
  description: model path -> {exists, sha256 (when it exists), source (sidecar or read)}.
  type: dict
  returned: always
present:
  description: The matching files in C(list_dir) before any pruning, sorted.
  type: list
  returned: when list_dir is given
removed:
  description: The model files C(prune) removed (or would remove, in check mode), sorted.
  type: list
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgejar_deploy_check import CheckFailed, check
from ansible.module_utils.edgejar_deploy_spec import REQUIRED_IF, REQUIRED_TOGETHER, SPEC


def main() -> None:
    module = AnsibleModule(
        argument_spec=SPEC,
        required_if=REQUIRED_IF,
        required_together=REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    try:
        result = check(module.params, module.check_mode, module.warn)
    except CheckFailed as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
