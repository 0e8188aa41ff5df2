"""edgejar_launch's reconcile of a node's instances, the logic of the module edgejar_instances: its caller
gives it the parameters, check and diff mode, a way to run commands and to finish (AnsibleModule, or
the action plugin's stand-in). Standard-library Python alone, so that the action plugin can send it to
the node as it is."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import socket
import tempfile
import time
from typing import Any, Protocol

_PROPS = (
    "Id,ActiveState,SubState,Result,MainPID,NRestarts,MemoryCurrent,MemoryMax,UnitFileState,ExecMainStatus"
)
Props = dict[str, str]


class Module(Protocol):
    """What the reconcile needs of its caller: AnsibleModule, or the action plugin's stand-in on the node."""

    params: dict[str, Any]
    check_mode: bool
    _diff: bool

    def run_command(self, args: list[str]) -> tuple[int, str, str]: ...

    def fail_json(self, msg: str, **kwargs: Any) -> Any: ...

    def exit_json(self, **kwargs: Any) -> Any: ...


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _ids(owner: str, group: str) -> tuple[int, int]:
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid


def _meta_ok(path: str, uid: int, gid: int, mode: int) -> bool | None:
    """Whether owner and mode match; None when the path does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, mode)


# runner/names.py NAME_PATTERN, the one name rule (tests/unit/test_names.py keeps them equal).
NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"


def bad_entries(entries: list[Any], host: str, training: bool = False) -> str | None:
    """Why the placement entries cannot be launched on `host` (the offending ids named), or None.
    `training`: the entries are training units (a rendezvous instead of a port and a model)."""
    name = re.compile(NAME_PATTERN)
    needs = ("rdzv_endpoint",) if training else ("model",)

    def ok(item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        try:
            numbers = int(item.get("memory_mib", 0)) > 0 and (training or int(item.get("port", 0)) > 0)
        except (TypeError, ValueError):
            return False
        return (
            all(isinstance(item.get(k), str) and name.fullmatch(item[k]) for k in ("id", "experiment"))
            and item.get("node", host) == host
            and numbers
            and bool(item.get("address"))
            and all(bool(item.get(k)) for k in needs)
        )

    def label(item: Any) -> str:
        return json.dumps(str(item.get("id", "?") if isinstance(item, dict) else "?")[:64])

    what = "training unit(s)" if training else "instance(s)"
    bad = [label(e) for e in entries if not ok(e)]
    if bad:
        return (
            f"{what} {', '.join(bad)}: each needs an id and an experiment name of 1-64 letters, digits, "
            f"_ . - (not starting with . or -), node {host}, memory_mib, address, "
            + ("rdzv_endpoint" if training else "port and model")
        )
    ids = [e["id"] for e in entries]
    if len(set(ids)) != len(ids):
        return f"duplicate {what.replace('(s)', '')} ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    return None


def config_text(entry: dict[str, Any], p: dict[str, Any]) -> str:
    """The instance's config file: its placement entry plus where its model, data and secret are."""
    model = str(entry["model"])
    file = p["catalog"].get(model, {}).get("file", os.path.basename(model))
    extra = {
        "model_path": os.path.join(p["models_dir"], file),
        "data_dir": p["data_dir"],
        "peer_secret_file": os.path.join(p["secrets_dir"], f"{entry['experiment']}.key"),
    }
    return json.dumps({**entry, **extra}, indent=4, sort_keys=True, separators=(",", ": ")) + "\n"


def training_config_text(entry: dict[str, Any], p: dict[str, Any]) -> str:
    """A training unit's config file: its placement entry plus where the code and data are."""
    extra = {"app_dir": p["code_dir"], "data_dir": p["data_dir"]}
    return json.dumps({**entry, **extra}, indent=4, sort_keys=True, separators=(",", ": ")) + "\n"


def dropin_text(entry: dict[str, Any], p: dict[str, Any]) -> str:
    """The instance's memory ceiling (numbers only: this is a root-owned unit file)."""
    lines = [
        f"# {p['managed']}",
        "# The instance's memory ceiling from its placement (no names or other free text here: this is a",
        "# root-owned unit file).",
        "[Service]",
        f"MemoryMax={int(entry['memory_mib'])}M",
    ]
    if p["memory_swap_max"]:
        lines.append(f"MemorySwapMax={p['memory_swap_max']}")
    if p.get("cpu_quota"):
        lines.append(f"CPUQuota={p['cpu_quota']}")
    return "\n".join(lines) + "\n"


class Node:
    """The node's files and systemd: every change recorded for --diff, nothing changed under --check."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.check: bool = module.check_mode
        self.diffs: list[dict[str, str]] = []

    def run(self, argv: list[str], check_rc: bool = True) -> str:
        rc, out, err = self.module.run_command(argv)
        if check_rc and rc != 0:
            self.module.fail_json(msg=f"{' '.join(argv)} failed (rc {rc}): {(err or out).strip()}")
        return out

    def directory(self, path: str, owner: str, group: str, mode: int) -> bool:
        """Ensure a directory with owner and mode; True when something changed."""
        uid, gid = _ids(owner, group)
        ok = _meta_ok(path, uid, gid, mode)
        if ok:
            return False
        if not self.check:
            if ok is None:
                os.makedirs(path, mode, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        return True

    def file(self, path: str, content: str, owner: str, group: str, mode: int, secret: bool = False) -> bool:
        """Ensure a file's content, owner and mode (content written atomically); True when changed."""
        uid, gid = _ids(owner, group)
        old, ok = _read(path), _meta_ok(path, uid, gid, mode)
        if old == content and ok:
            return False
        if old != content:
            hidden = "(secret)\n"
            self.diffs.append(
                {
                    "before_header": path,
                    "after_header": path,
                    "before": (hidden if old is not None else "") if secret else (old or ""),
                    "after": hidden if secret else content,
                }
            )
        if self.check:
            return True
        if old == content:
            os.chown(path, uid, gid)
            os.chmod(path, mode)
            return True
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True

    def remove(self, path: str) -> bool:
        if not os.path.lexists(path):
            return False
        self.diffs.append({"before_header": path, "after_header": path, "before": "present\n", "after": ""})
        if not self.check:
            if os.path.isdir(path) and not os.path.islink(path):
                for entry in os.listdir(path):
                    os.unlink(os.path.join(path, entry))
                os.rmdir(path)
            else:
                os.unlink(path)
        return True

    def show(self, units: list[str]) -> dict[str, Props]:
        """unit -> its properties, in one systemctl call."""
        if not units:
            return {}
        out = self.run(["systemctl", "show", f"--property={_PROPS}", "--", *units])
        states: dict[str, Props] = {}
        current: Props = {}
        for line in [*out.splitlines(), ""]:
            if not line.strip():
                if current.get("Id"):
                    states[current["Id"]] = current
                current = {}
                continue
            key, _, value = line.partition("=")
            current[key] = value
        return {u: states.get(u, {}) for u in units}

    def known(self, unit: str) -> list[tuple[str, str]]:
        """(id, ActiveState) of every instance of the template that systemd knows."""
        pattern = re.compile(rf"^{re.escape(unit)}@(\S+)\.service\s+\S+\s+(\S+)")
        out = self.run(
            ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full", f"{unit}@*.service"],
            check_rc=False,
        )
        return [(m.group(1), m.group(2)) for line in out.splitlines() if (m := pattern.match(line.strip()))]


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _running(props: Props) -> bool:
    return props.get("ActiveState") in ("active", "reloading")


def _completed(props: Props) -> bool:
    """The instance ran all its cycles and exited 0: nothing left to wait for."""
    return (
        props.get("ActiveState") == "inactive"
        and props.get("Result") == "success"
        and props.get("ExecMainStatus") in ("0", "")
    )


def _mib(value: str | None) -> float | None:
    return round(int(value) / 1048576.0, 1) if value and value.isdigit() else None


class Reconcile:
    """One node's reconcile: files, prune, systemd actions, wait, report (module params in `p`)."""

    def __init__(self, module: Module, training: bool = False) -> None:
        self.node = Node(module)
        self.p: dict[str, Any] = module.params
        self.training = training  # training units (edgejar-train@): no port to answer, no secrets
        self.unit: str = self.p["training_unit" if training else "unit"]
        self.template: str = self.p["training_template" if training else "template"]
        self.entries: list[dict[str, Any]] = self.p["training" if training else "instances"]
        self.wanted: list[str] = [i["id"] for i in self.entries]
        self.by_id: dict[str, dict[str, Any]] = {i["id"]: i for i in self.entries}
        self.why: dict[str, list[str]] = {iid: [] for iid in self.wanted}
        self.changed = False
        self.units_changed = False
        self.removed: list[str] = []

    def name(self, iid: str) -> str:
        return f"{self.unit}@{iid}.service"

    def files(self) -> None:
        p, node = self.p, self.node
        for path, owner, group, mode in (
            (os.path.dirname(p["config_dir"].rstrip("/")), "root", "root", 0o755),
            (p["config_dir"], "root", p["group"], 0o750),
            (p["data_dir"], p["user"], p["group"], 0o750),
        ):
            self.changed |= node.directory(path, owner, group, mode)
        template = node.file(
            os.path.join(p["unit_dir"], f"{self.unit}@.service"), self.template, "root", "root", 0o644
        )
        self.units_changed |= template
        render = training_config_text if self.training else config_text
        for inst in self.entries:
            iid = inst["id"]
            if node.file(
                os.path.join(p["config_dir"], f"{iid}.json"), render(inst, p), "root", p["group"], 0o640
            ):
                self.why[iid].append("config changed")
            dropin_dir = os.path.join(p["unit_dir"], f"{self.name(iid)}.d")
            self.changed |= node.directory(dropin_dir, "root", "root", 0o755)
            if node.file(
                os.path.join(dropin_dir, "10-edgejar.conf"), dropin_text(inst, p), "root", "root", 0o644
            ):
                self.why[iid].append("memory ceiling changed")
                self.units_changed = True
            if template:
                self.why[iid].append("unit template changed")
        if self.training:
            return  # the secrets are the instances' (peer authentication)
        if len(p["contents"]) != len(p["files"]):
            self.node.module.fail_json(msg="files and contents must have the same length")
        for n, f in enumerate(p["files"]):  # (zip's strict= needs Python 3.10; nodes may have 3.9)
            content = p["contents"][n]
            mode = int(str(f.get("mode", "0640")), 8)
            owner, group = f.get("owner", "root"), f.get("group", "root")
            self.changed |= node.directory(os.path.dirname(f["path"]), "root", group, 0o750)
            if node.file(f["path"], content, owner, group, mode, secret=True):
                self.changed = True
                for iid in f.get("instances", []):
                    if iid in self.why:
                        self.why[iid].append(f"{os.path.basename(f['path'])} changed")

    def prune(self) -> None:
        """Stop, disable and remove the instances the node has and the placement no longer lists."""
        p, node = self.p, self.node
        known = node.known(self.unit)
        present = {i for i, _ in known}
        if os.path.isdir(p["config_dir"]):
            present |= {
                e[: -len(".json")]
                for e in os.listdir(p["config_dir"])
                if e.endswith(".json") and self._own_config(os.path.join(p["config_dir"], e))
            }
        prefix, suffix = f"{self.unit}@", ".service.d"
        if os.path.isdir(p["unit_dir"]):
            present |= {
                e[len(prefix) : -len(suffix)]
                for e in os.listdir(p["unit_dir"])
                if e.startswith(prefix) and e.endswith(suffix)
            }
        stale = sorted(present - set(self.wanted))
        if not stale:
            return
        # act() reloads systemd once for the removed files and links: not here (--no-reload), nor for enable
        self.removed, self.changed, self.units_changed = stale, True, True
        if not node.check:
            node.run(
                ["systemctl", "disable", "--now", "--no-reload", "--", *map(self.name, stale)], check_rc=False
            )
            # Every pruned unit, not only those failed before the stop: one caught restarting (after an
            # OOM kill) can end failed by the stop itself, and would stay listed for the next run to prune.
            node.run(["systemctl", "reset-failed", "--", *map(self.name, stale)], check_rc=False)
        for iid in stale:
            node.remove(os.path.join(p["config_dir"], f"{iid}.json"))
            self.units_changed |= node.remove(os.path.join(p["unit_dir"], f"{self.name(iid)}.d"))

    def _own_config(self, path: str) -> bool:
        """Whether a config file in the shared directory is of this kind (a training unit's says so)."""
        try:
            data = json.loads(_read(path) or "{}")
        except ValueError:
            data = {}  # a damaged config counts as an instance's (the instances' prune removes it)
        kind = data.get("kind") if isinstance(data, dict) else None
        return (kind == "torch_distributed") == self.training

    def act(self) -> dict[str, str]:
        """Reload once, then enable, restart and start what needs it (one systemctl call each)."""
        node = self.node
        if self.units_changed and not node.check:
            node.run(["systemctl", "daemon-reload"])
        before = node.show([self.name(i) for i in self.wanted])
        actions: dict[str, str] = {}
        for iid in self.wanted:
            props = before[self.name(iid)]
            if self.why[iid]:
                actions[iid] = "restarted"
            elif _completed(props) and props.get("UnitFileState") == "enabled":
                actions[iid] = "none"  # ran all its cycles: started again only when its files change
            elif not _running(props):
                actions[iid] = "started"
                self.why[iid].append(f"was {props.get('ActiveState') or 'unknown'}")
            else:
                actions[iid] = "none"
        enable = [self.name(i) for i in self.wanted if before[self.name(i)].get("UnitFileState") != "enabled"]
        restart = [self.name(i) for i in self.wanted if actions[i] == "restarted"]
        start = [self.name(i) for i in self.wanted if actions[i] == "started"]
        self.changed |= bool(enable or restart or start)
        if not node.check:
            if enable:
                # the links only matter at boot, which reads them from disk: no reload for them
                node.run(["systemctl", "enable", "--no-reload", "--", *enable])
            # A start that launch asks for is deliberate: it must not count against the unit's start
            # limit (StartLimitBurst), which is there for crash loops. Without this, editing one
            # instance a few times within StartLimitIntervalSec left it refused ("start-limit-hit").
            if restart or start:
                node.run(["systemctl", "reset-failed", "--", *restart, *start], check_rc=False)
            # Blocking calls: when they return the old process is gone (a Type=simple start job ends at
            # exec), so the wait cannot take the old process's port for the new one's. A unit that cannot
            # start is reported by the wait, with its log, instead of failing here.
            if restart:
                node.run(["systemctl", "restart", "--", *restart], check_rc=False)
            if start:
                node.run(["systemctl", "start", "--", *start], check_rc=False)
        return actions

    def wait(self) -> tuple[dict[str, Props], dict[str, bool]]:
        """Poll until every instance runs and answers on its port, completed, or failed (or the timeout)."""
        units = [self.name(i) for i in self.wanted]
        answers: dict[str, bool] = {}
        deadline = time.monotonic() + self.p["wait_timeout"]
        pending = set(self.wanted)
        while True:
            states = self.node.show(units)
            for iid in sorted(pending):
                props, inst = states[self.name(iid)], self.by_id[iid]
                if _running(props) and (self.training or _answers(inst["address"], inst["port"])):
                    answers[iid] = True
                    pending.discard(iid)
                elif props.get("ActiveState") == "failed" or _completed(props):
                    pending.discard(iid)
            if not pending or time.monotonic() > deadline:
                return states, answers
            time.sleep(0.25)

    def report(
        self, actions: dict[str, str], states: dict[str, Props], answers: dict[str, bool]
    ) -> tuple[list[dict[str, Any]], list[str], list[str]]:
        results, lines, failures = [], [], []
        check = self.node.check
        for iid in self.wanted:
            inst, props = self.by_id[iid], states[self.name(iid)]
            state = (
                "completed" if _completed(props) else f"{props.get('ActiveState')}/{props.get('SubState')}"
            )
            entry: dict[str, Any] = {
                "id": iid,
                "action": actions[iid],
                "why": self.why[iid],
                "state": state,
                "result": props.get("Result"),
                "pid": int(props.get("MainPID") or 0),
                "restarts": int(props.get("NRestarts") or 0),
                "memory_mib": _mib(props.get("MemoryCurrent")),
                "memory_max_mib": _mib(props.get("MemoryMax")),
                "port_answering": answers.get(iid, False),
                "ok": check or _completed(props) or answers.get(iid, False),
            }
            if self.training:
                entry["port_answering"] = None  # a training unit has no port of its own
            port = (
                ""
                if check or self.training
                else (", port answers" if entry["port_answering"] else ", port NOT answering")
            )
            where_at = (
                f"rank(s) {inst.get('nproc_per_node', 1)} of {inst.get('world_size', '?')}, "
                f"rendezvous {inst.get('rdzv_endpoint')}"
                if self.training
                else f"port {inst['port']}"
            )
            mem = "n/a" if entry["memory_mib"] is None else f"{entry['memory_mib']} MiB"
            did = "" if actions[iid] == "none" else f" [{actions[iid]}: {'; '.join(self.why[iid])}]"
            lines.append(
                f"{iid} on {self.p['host']} {where_at}: {state}{port}, pid {entry['pid']}, "
                f"memory {mem} of {entry['memory_max_mib']} MiB, restarts {entry['restarts']}{did}"
            )
            if not entry["ok"]:
                n = str(self.p["log_lines"])
                log = self.node.run(
                    ["journalctl", "-u", self.name(iid), "-n", n, "--no-pager", "-o", "cat"], check_rc=False
                )
                entry["log_tail"] = log.splitlines()
                where = (
                    f", not answering on {inst['address']}:{inst['port']}"
                    if _running(props) and not self.training
                    else ""
                )
                tail = "\n  ".join(entry["log_tail"]) or "(no journal lines)"
                failures.append(
                    f"{iid} is {state} (result {entry['result']}, restarts {entry['restarts']}){where} "
                    f"after {self.p['wait_timeout']} s; journalctl -u {self.name(iid)}:\n  {tail}"
                )
            results.append(entry)
        return results, lines, failures


def not_deployed(stamp: str, expected: str) -> str | None:
    """Why the node does not hold what `runner up` last deployed there (its deploy stamp, written by
    edgejar_deploy, lacks the expected fingerprint), or None; no expectation, no check."""
    if not expected:
        return None
    have = (_read(stamp) or "").strip() if stamp else ""
    if have == expected:
        return None
    said = f"holds {have[:12]}" if have else "is missing"
    return f"not what was last deployed: its deploy stamp {stamp} {said}, expected {expected[:12]}"


def reconcile(module: Module) -> None:
    """The whole reconcile for validated parameters; ends with module.exit_json or module.fail_json."""
    for key in ("memory_swap_max", "managed"):
        if any(c in module.params[key] for c in "\r\n"):
            module.fail_json(msg=f"{key} must be one line (it goes into a unit file)")
    if module.params.get("cpu_quota") and not re.fullmatch(r"[1-9][0-9]{0,5}%", module.params["cpu_quota"]):
        module.fail_json(
            msg=f"cpu_quota must be a percentage such as 50% or 200%, got {module.params['cpu_quota']!r}"
        )
    host = module.params["host"]
    why = not_deployed(module.params.get("deploy_stamp") or "", module.params.get("deployed") or "")
    if why:
        module.fail_json(msg=f"{why}; nothing changed here", not_deployed=True)
    kinds = [False] + ([True] if module.params.get("training_template") else [])
    for training in kinds:
        why = bad_entries(module.params["training" if training else "instances"], host, training)
        if why:
            module.fail_json(
                msg=f"{host}: host_vars/{host}/placement.yml: {why}; re-run `python -m runner place`."
            )
    out: dict[str, Any] = {"changed": False, "instances": [], "training": [], "removed": [], "lines": []}
    diffs: list[dict[str, str]] = []
    failures: list[str] = []
    for training in kinds:
        rec = Reconcile(module, training)
        rec.files()
        if rec.p["prune"]:
            rec.prune()
        actions = rec.act()
        if module.check_mode or not rec.wanted:
            states, answers = rec.node.show([rec.name(i) for i in rec.wanted]), {}
        else:
            states, answers = rec.wait()
        results, lines, failed = rec.report(actions, states, answers)
        out["changed"] |= rec.changed or any(rec.why.values())
        out["training" if training else "instances"] = results
        out["removed"] += rec.removed
        out["lines"] += lines
        diffs += rec.node.diffs
        failures += failed
    if module._diff:
        out["diff"] = diffs
    if failures:
        module.fail_json(msg="\n".join(failures), **out)
    module.exit_json(**out)
