"""edgejar's kernel provisioner for the Jupyter Kernel Gateway (jupyter_client's provisioner API, entry
point `edgejar` in the group `jupyter_client.kernel_provisioners`; the notebooks role registers it).

pre_launch places the kernel (choose.py) with the kernelspec's settings and the client's
KERNEL_EDGEJAR_* variables, and reserves its slot and memory at once (two requests at the same moment
never take one slot twice); a request nothing can satisfy is refused there, with every node's reason,
before anything starts (HTTP 400 for bad input, 409 when nothing fits now). launch_kernel asks the
chosen node's helper (ctl.py, over SSH) to start it; an unreachable node is left out and the kernel
placed again, once. poll, signals, shutdown and restarts go through the same helper.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from tornado import web
from traitlets import Bool, Float, List, Unicode

from runner.errors import EdgejarError, InputError, NoPlacementError
from runner.node.jsonfile import read_object
from runner.node.kernels import choose, pool, request
from runner.node.kernels.remote import Ssh, Unreachable

CONFIG_ENV = "EDGEJAR_KERNELS_CONFIG"
_STATUS_TTL_S = 2.0  # a poll within this long of the last answer reuses it


class _Shared:
    """What every kernel of this gateway process shares: the config (re-read when it changes), the
    kernels it runs (their claims), and the lock that makes place-and-reserve one step."""

    running: ClassVar[dict[str, choose.Running]] = {}
    lock: ClassVar[asyncio.Lock | None] = None
    _cache: ClassVar[tuple[float, pool.Pool, Ssh] | None] = None

    @classmethod
    def config(cls) -> tuple[pool.Pool, Ssh]:
        path = Path(os.environ.get(CONFIG_ENV, "/etc/edgejar/gateway/kernels.json"))
        mtime = path.stat().st_mtime
        if cls._cache is None or cls._cache[0] != mtime:
            doc = read_object(path, "the gateway's kernel config")
            ssh = doc.get("ssh")
            if not isinstance(ssh, dict):
                raise InputError(f"{path}: ssh must be an object")
            cls._cache = (
                mtime,
                pool.parse(doc, str(path)),
                Ssh(
                    user=str(ssh["user"]),
                    key=Path(str(ssh["key"])),
                    known_hosts=Path(str(ssh["known_hosts"])),
                    control_dir=Path(str(ssh["control_dir"])),
                ),
            )
        return cls._cache[1], cls._cache[2]

    @classmethod
    def guard(cls) -> asyncio.Lock:
        if cls.lock is None:
            cls.lock = asyncio.Lock()
        return cls.lock


class EdgejarProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """A kernel on a cluster node, placed by edgejar (docs/notebooks.md)."""

    node = Unicode("", config=True, help="the node this kernelspec pins its kernels to ('' = any)")
    tags = List(Unicode(), default_value=[], config=True, help="tags the node must have")
    gpu = Bool(False, config=True, help="the kernel needs a GPU")
    gpu_memory_gb = Float(0.0, config=True, help="free GPU memory the kernel needs (GB)")
    memory_gb = Float(0.0, config=True, help="the kernel's memory ceiling (GB; 0 = the pool's default)")

    placed_on: str = ""
    address: str = ""
    launched: bool = False
    _status: tuple[float, int | None] | None = None

    @property
    def has_process(self) -> bool:
        return self.launched

    def _spec(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "tags": list(self.tags),
            "gpu": self.gpu,
            "gpu_memory_gb": self.gpu_memory_gb,
            "memory_gb": self.memory_gb,
        }

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        env = kwargs.get("env") or {}
        if not (self.placed_on and self.kernel_id in _Shared.running):  # a restart keeps its node
            try:
                the_pool, _ = _Shared.config()
                req = request.parse(self._spec(), env, the_pool)
                async with _Shared.guard():
                    node = choose.choose(the_pool, _Shared.running.values(), self.kernel_id, req)
                    _Shared.running[self.kernel_id] = choose.Running(
                        self.kernel_id, node, req.memory_mib, req.gpu_mib if req.gpu else 0
                    )
            except NoPlacementError as exc:
                self.log.warning("kernel %s: %s", self.kernel_id, exc)
                raise web.HTTPError(409, str(exc), reason=str(exc)[:500]) from None
            except InputError as exc:
                self.log.warning("kernel %s: %s", self.kernel_id, exc)
                raise web.HTTPError(400, str(exc), reason=str(exc)[:500]) from None
            self.placed_on = node
            self.address = the_pool.by_name()[node].address
            self.log.info("kernel %s: placed on %s (%s)", self.kernel_id, node, req.describe())
        kwargs.pop("extra_arguments", None)
        return await super().pre_launch(cmd=list(self.kernel_spec.argv), **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        km = self.parent
        secret = {
            "key": km.session.key.decode() if km is not None else "",
            "signature_scheme": getattr(km.session, "signature_scheme", "hmac-sha256"),
            "kernel_name": getattr(km, "kernel_name", ""),
        }
        mine = _Shared.running[self.kernel_id]
        try:
            info = await self._call("start", str(mine.memory_mib), stdin=secret)
        except Unreachable as exc:
            self.log.warning(
                "kernel %s: %s; placing it again without %s", self.kernel_id, exc, self.placed_on
            )
            info = await self._elsewhere(kwargs.get("env") or {}, secret, str(exc))
        except EdgejarError as exc:
            _Shared.running.pop(self.kernel_id, None)
            self.log.error("kernel %s on %s: %s", self.kernel_id, self.placed_on, exc)
            status = 400 if isinstance(exc, InputError) else 502
            raise web.HTTPError(status, str(exc), reason=f"{self.placed_on}: {exc}"[:500]) from None
        self.launched = True
        self._status = None
        info["key"] = km.session.key if km is not None else b""
        self.connection_info = info
        return info

    async def _elsewhere(self, env: dict[str, str], secret: dict[str, Any], why: str) -> dict[str, Any]:
        """Place the kernel once more with its unreachable node in maintenance, and start it there."""
        the_pool, _ = _Shared.config()
        gone = self.placed_on
        without = replace(
            the_pool,
            nodes=tuple(
                replace(p, node=replace(p.node, unavailable=True)) if p.node.name == gone else p
                for p in the_pool.nodes
            ),
        )
        try:
            req = request.parse(self._spec(), env, without)
            async with _Shared.guard():
                _Shared.running.pop(self.kernel_id, None)
                node = choose.choose(without, _Shared.running.values(), self.kernel_id, req)
                _Shared.running[self.kernel_id] = choose.Running(
                    self.kernel_id, node, req.memory_mib, req.gpu_mib if req.gpu else 0
                )
        except InputError as exc:
            _Shared.running.pop(self.kernel_id, None)
            raise web.HTTPError(409, f"{why}; {exc}", reason=f"{why}; {exc}"[:500]) from None
        self.placed_on, self.address = node, without.by_name()[node].address
        return await self._call("start", str(req.memory_mib), stdin=secret)

    async def _call(self, cmd: str, *args: str, stdin: dict[str, Any] | None = None) -> dict[str, Any]:
        _, ssh = _Shared.config()
        return await ssh.call(self.address, [cmd, self.kernel_id, *args], stdin)

    async def poll(self) -> int | None:
        if not self.launched:
            return 0
        now = time.monotonic()
        if self._status is not None and now - self._status[0] < _STATUS_TTL_S:
            return self._status[1]
        try:
            doc = await self._call("status")
        except EdgejarError as exc:
            self.log.warning("kernel %s on %s: %s", self.kernel_id, self.placed_on, exc)
            return None  # unknown is not dead: the restarter's heartbeat decides
        state = doc.get("state")
        code: int | None = None
        if state not in ("active", "activating", "reloading"):
            code = 137 if doc.get("result") == "oom-kill" else (0 if doc.get("result") == "success" else 1)
            if doc.get("result") == "oom-kill":
                self.log.warning(
                    "kernel %s on %s: killed at its memory ceiling", self.kernel_id, self.placed_on
                )
        self._status = (now, code)
        return code

    async def wait(self) -> int | None:
        while True:
            self._status = None
            code = await self.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.5)

    async def send_signal(self, signum: int) -> None:
        names = {2: "INT", 15: "TERM", 9: "KILL", 1: "HUP", 10: "USR1"}
        if self.launched and signum in names:
            await self._call("signal", names[signum])

    async def kill(self, restart: bool = False) -> None:
        if self.launched:
            await self._call("signal", "KILL")

    async def terminate(self, restart: bool = False) -> None:
        if self.launched:
            await self._call("signal", "TERM")

    async def cleanup(self, restart: bool = False) -> None:
        if self.launched:
            try:
                await self._call("stop")
            except EdgejarError as exc:
                self.log.warning("kernel %s on %s: stop: %s", self.kernel_id, self.placed_on, exc)
        self.launched = False
        if not restart:
            _Shared.running.pop(self.kernel_id, None)

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(node=self.placed_on, address=self.address)
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.placed_on = str(provisioner_info.get("node", ""))
        self.address = str(provisioner_info.get("address", ""))
        self.launched = bool(self.placed_on)
