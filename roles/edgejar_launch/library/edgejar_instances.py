#!/usr/bin/python
"""Bring a node's edgejar instance units to their desired state in one step and report each instance.

The role runs this through the action plugin of the same name (action_plugins/), which sends the same
reconcile (module_utils/edgejar_reconcile.py) to the node as a small standard-library program instead
of this module's payload; this module is its documented interface and runs the reconcile itself when
called directly."""

from __future__ import annotations

DOCUMENTATION = r"""
module: edgejar_instances
short_description: Reconcile a node's edgejar experiment instances (systemd units) in one step
description:
  - Compares the desired template unit, per-instance configs and drop-ins and shared files with what is
    on the node, writes only what differs (atomically, with owner and mode), removes instances that are
    no longer wanted, reloads systemd once if a unit file changed, restarts exactly the instances whose
    files changed, starts the ones that are not running, and waits until each is active and answers on
    its peers port.
  - Returns one structured result per instance (what changed, what was done and why, state, port).
  - Supports check mode (reports what it would do, changes nothing) and diff mode.
options:
  unit: {description: Template unit name without @.service., type: str, required: true}
  unit_dir: {description: Where unit files go., type: path, required: true}
  config_dir: {description: Directory of the per-instance config JSON files., type: path, required: true}
  data_dir: {description: The units' data directory (owned by the service user)., type: path, required: true}
  user: {description: The service user., type: str, required: true}
  group: {description: The service group (may read configs)., type: str, required: true}
  template: {description: The rendered template unit., type: str, required: true}
  instances:
    description:
      - Desired instances, the node's placement entries (id, experiment, address, port, memory_mib, model
        and the rest). Checked before anything is written - ids and experiment names follow edgejar's
        name rule, C(node) (when given) is C(host), ids are unique; the offending entries are named.
      - Each one's config file is the entry plus model_path, data_dir and peer_secret_file,
        as indented JSON with sorted keys; its drop-in sets C(MemoryMax) from memory_mib (and
        C(MemorySwapMax)), numbers only, so no name or other free text reaches the root-owned unit file.
    type: list
    elements: raw
    required: true
  models_dir: {description: Where the node's models are (model_path's directory)., type: path, required: true}
  catalog:
    description:
      - The model catalog, model name -> entry with C(file) (its file name in models_dir); a model not in
        it is a path, and its base name is the file name.
    type: dict
    default: {}
  secrets_dir: {description: Directory of the C(<experiment>.key) peer secrets., type: path, required: true}
  memory_swap_max: {description: The drop-ins' C(MemorySwapMax) (empty - left out)., type: str, default: "0"}
  cpu_quota: {description: The drop-ins' C(CPUQuota), a percentage (empty - none)., type: str, default: ""}
  managed: {description: The drop-ins' first comment line., type: str, default: Ansible managed}
  files:
    description:
      - Other files (path, owner, group, mode, instances), e.g. secrets, whose contents come in
        C(contents) (same order); their content is never shown in a diff. A changed file restarts the
        instances it lists.
    type: list
    elements: dict
    default: []
  contents:
    description: The contents of C(files), in the same order; never logged (no_log).
    type: list
    elements: str
    default: []
  prune: {description: Stop and remove instances that are not desired., type: bool, default: true}
  wait_timeout: {description: Seconds to wait for each instance to run and answer., type: int, default: 120}
  log_lines: {description: Journal lines reported for an instance that failed., type: int, default: 20}
  host: {description: The node's name in the report lines., type: str, default: this node}
  training: {description: The node's training units (their placement entries)., type: list, default: []}
  training_unit: {description: The training units' template unit name., type: str, default: edgejar-train}
  training_template: {description: Their template unit (empty - none reconciled)., type: str, default: ""}
  code_dir:
    description: Where deploy put the code (training entries are relative to it).
    type: path
    default: /opt/edgejar/app
  deploy_stamp: {description: The deploy stamp file edgejar_deploy writes., type: path, default: ""}
  deployed:
    description: >-
      When given, the deploy stamp must hold this fingerprint (C(runner up) skipped an unchanged deploy);
      otherwise the module fails with C(not_deployed) before it changes anything.
    type: str
    default: ""
author: edgejar
"""

RETURN = r"""
instances:
  description:
    - One entry per desired instance - id, action (none, started, restarted), why (the reasons), state,
      result, pid, restarts, memory_mib, memory_max_mib, port_answering, ok, and log_tail when not ok.
  type: list
  returned: always
removed:
  description: Ids of the instances that were stopped and removed (or would be, under check mode).
  type: list
  returned: always
lines:
  description: One human-readable report line per instance.
  type: list
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgejar_instances_spec import SPEC
from ansible.module_utils.edgejar_reconcile import reconcile


def main() -> None:
    reconcile(AnsibleModule(argument_spec=SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
