"""MonitorApp: polls the cluster in a background thread worker and shows nodes, instances, the serving front
door's backends (when given its key) and the selected instance's journal. The UI thread never waits on SSH:
polls, actions and the log follower run in workers and hand their results back as messages (`ui`), which
never block a worker, even when the app has exited meanwhile (Textual's call_from_thread would wait for
ever for a loop that no longer runs)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TextIO, cast

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from runner.errors import EdgejarError
from runner.health import metrics, report
from runner.health.cluster import ClusterHealth, HealthService
from runner.health.model import InstanceRow, Status
from runner.monitor import actions
from runner.monitor import format as fmt
from runner.monitor.widgets import ConfirmScreen, LogPane
from runner.planning import failover as fo
from runner.serving import door_client

NODE_COLUMNS = ("node", "host", "status", "memory (vs node_ram_gb)", "gpu", "instances", "seen", "notes")
INSTANCE_COLUMNS = (
    "instance",
    "node",
    "state",
    "lives/deaths",
    "cycle/step",
    "tok/s|smp/s",
    "RSS / ceiling",
    "last msg|loss",
)


class WorkerCall(Message):
    """A call that a worker thread hands to the UI thread."""

    def __init__(self, call: Callable[[], object]) -> None:
        super().__init__()
        self.call = call


class MonitorApp(App[None]):
    TITLE = "edgejar monitor"
    CSS = """
    #poll-status { height: 1; padding: 0 1; background: $boost; }
    #poll-status.stale { background: $error 40%; color: $text; }
    #nodes { height: auto; max-height: 40%; }
    #instances { height: auto; max-height: 40%; }
    #serving { height: auto; max-height: 25%; border-top: solid $primary; }
    #log { height: 1fr; min-height: 5; border-top: solid $primary; }
    """
    BINDINGS = [  # noqa: RUF012 (Textual's own convention)
        Binding("r", "instance('restart')", "Restart instance"),
        Binding("s", "instance('stop')", "Stop instance"),
        Binding("m", "maintenance", "Maintenance"),
        Binding("f", "failover", "Fail over node"),
        Binding("p", "poll_now", "Poll now"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        service: HealthService,
        *,
        interval_s: float = 2.0,
        prom: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        follow_logs: bool = True,
        reload_inventory_s: float = 30.0,
        failover: fo.Failover | None = None,
        frontdoor: door_client.Door | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.frontdoor = frontdoor  # polled with the nodes: its backends, load and strategy
        self.interval_s = interval_s
        self.prom = prom
        self.wall_clock = wall_clock
        self.follow_logs = follow_logs
        self.reload_inventory_s = reload_inventory_s
        self.failover = failover or fo.Failover(service.cluster.inventory)
        self.placement_failures = (
            0  # instances a fail over could not place (edgejar_placement_failures_total)
        )
        self._failing_over = False
        self._inventory_read = time.monotonic()  # the service was just built from it
        self.health: ClusterHealth | None = None
        self.poll_count = 0
        self.last_poll_done: float | None = None  # monotonic
        self.last_poll_wall = 0.0
        self._lock = threading.Lock()  # one poll or inventory reload at a time
        self._polling = False
        self._journal: subprocess.Popen[str] | None = None
        self._journal_for: str | None = None
        self._journal_lock = threading.Lock()
        self._journal_token = 0  # the follower that may write to the log pane; others stop
        self.nodes_table: DataTable[object] = DataTable(id="nodes", cursor_type="row", zebra_stripes=True)
        self.instances_table: DataTable[object] = DataTable(
            id="instances", cursor_type="row", zebra_stripes=True
        )
        self.serving_table: DataTable[object] = DataTable(id="serving", cursor_type="row", zebra_stripes=True)
        self.log_pane = LogPane(id="log", max_lines=2000)
        self.status_line = Static("waiting for the first poll ...", id="poll-status")

    # --- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield self.status_line
        yield self.nodes_table
        yield self.instances_table
        if self.frontdoor is not None:
            yield self.serving_table
        yield self.log_pane
        yield Footer()

    def on_mount(self) -> None:
        self.nodes_table.add_columns(*NODE_COLUMNS)
        self.instances_table.add_columns(*INSTANCE_COLUMNS)
        self.serving_table.add_columns(*door_client.BACKEND_HEADER)
        if self.frontdoor is not None:
            self.serving_table.border_title = f"front door {self.frontdoor.url}: not polled yet"
        self.log_pane.write_line("select an instance to follow its journal")
        self.sub_title = str(self.service.cluster.inventory)
        self.trigger_poll()
        self.set_interval(self.interval_s, self.trigger_poll)
        self.set_interval(1.0, self.show_staleness)

    # --- from the workers ----------------------------------------------------------------------------
    def ui(self, fn: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """From a worker thread: call fn on the UI thread, without waiting. Dropped once the app exits."""
        with contextlib.suppress(RuntimeError):  # the event loop is already closed
            self.post_message(WorkerCall(partial(fn, *args, **kwargs)))

    @on(WorkerCall)
    def run_worker_call(self, message: WorkerCall) -> None:
        message.call()

    # --- polling -----------------------------------------------------------------------------------
    def trigger_poll(self) -> None:
        if not self._polling:
            self._polling = True
            self.poll_worker()

    @work(thread=True, group="poll")
    def poll_worker(self) -> None:
        problems: list[str] = []
        try:
            with self._lock:
                if time.monotonic() - self._inventory_read >= self.reload_inventory_s:
                    self._inventory_read = time.monotonic()
                    try:  # new placements, maintenance flags set elsewhere
                        self.service.reload_inventory()
                    except EdgejarError as exc:
                        problems.append(f"inventory not re-read (keeping the last one): {exc}")
                health = self.service.poll()
            if self.prom is not None:
                try:
                    text = metrics.render(health, placement_failures=self.placement_failures)
                    metrics.write(self.prom, text)
                except (OSError, EdgejarError) as exc:
                    problems.append(f"metrics not written: {exc}")
            if self.frontdoor is not None:
                try:
                    door: dict[str, Any] | str = self.frontdoor.call("GET", "/admin/status", timeout_s=5.0)
                except EdgejarError as exc:
                    door = str(exc)
                self.ui(self.show_serving, door)
        except Exception as exc:  # a poll must never take the UI down
            self.ui(self.notify, f"poll failed: {exc}", severity="error")
            return
        finally:
            self._polling = False
        for problem in problems:
            self.ui(self.notify, problem, severity="warning")
        self.ui(self.show, health)

    def stale_after_s(self) -> float:
        return 2 * self.interval_s + self.service.poller.timeout_s

    def show_staleness(self) -> None:
        bar = self.status_line
        if self.health is None or self.last_poll_done is None:
            return
        ago = time.monotonic() - self.last_poll_done
        stale = ago > self.stale_after_s()
        counts = {s: sum(1 for n in self.health.nodes if n.status == s) for s in Status}
        summary = ", ".join(f"{c} {s.value.lower()}" for s, c in counts.items() if c)
        when = time.strftime("%H:%M:%S", time.localtime(self.last_poll_wall))
        text = f"poll #{self.poll_count} at {when} took {self.health.elapsed_s:.2f} s; {summary}"
        if stale:
            text = f"STALE: no completed poll for {ago:.0f} s | " + text
        bar.update(text)
        bar.set_class(stale, "stale")

    def show(self, health: ClusterHealth) -> None:
        """Fill both tables from a poll (UI thread) and announce nodes that changed status."""
        before = self.health.by_name() if self.health else {}
        self.health = health
        self.poll_count += 1
        self.last_poll_done = time.monotonic()
        self.last_poll_wall = self.wall_clock()
        for n in health.nodes:
            old = before.get(n.node)
            if old is not None and old.status != n.status:
                severity = "error" if n.status == Status.UNAVAILABLE else "warning"
                if n.status == Status.HEALTHY:
                    severity = "information"
                self.notify(f"{n.node}: {old.status.value} -> {n.status.value}", severity=severity)
        self._fill_nodes(health)
        self._fill_instances(health)
        self.show_staleness()

    def show_serving(self, doc: dict[str, Any] | str) -> None:
        """The front door's backends, or why they are not shown (the last rows stay, marked old)."""
        assert self.frontdoor is not None
        table = self.serving_table
        if isinstance(doc, str):
            table.border_title = f"front door: {doc} (rows from the last answer)"
            return
        table.border_title = f"front door {self.frontdoor.url}: {door_client.headline(doc)}"
        selected = self._selected_key(table)
        table.clear()
        for row in door_client.backend_rows(doc):
            table.add_row(*row, key=row[0])
        self._restore(table, selected)

    def _fill_nodes(self, health: ClusterHealth) -> None:
        table = self.nodes_table
        selected = self._selected_key(table)
        table.clear()
        for n in health.nodes:
            table.add_row(
                n.node,
                n.address,
                fmt.status_cell(n),
                fmt.memory_cell(n),
                fmt.gpu_cell(n),
                report.instances(n),
                fmt.seen_cell(n, self.stale_after_s()),
                "; ".join(n.reasons) or "-",
                key=n.node,
            )
        self._restore(table, selected)

    def _fill_instances(self, health: ClusterHealth) -> None:
        table = self.instances_table
        selected = self._selected_key(table)
        table.clear()
        now = self.wall_clock()
        for n in health.nodes:
            for i in n.instances:
                table.add_row(
                    i.instance,
                    i.node,
                    fmt.state_cell(i),
                    fmt.lives_cell(i),
                    fmt.progress_cell(i),
                    fmt.rate_cell(i),
                    fmt.rss_cell(i),
                    fmt.last_cell(i, now),
                    key=f"{i.node}/{i.instance}",
                )
        self._restore(table, selected)

    @staticmethod
    def _selected_key(table: DataTable[object]) -> str | None:
        if table.row_count == 0:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    @staticmethod
    def _restore(table: DataTable[object], key: str | None) -> None:
        if key is None:
            return
        try:
            table.move_cursor(row=table.get_row_index(key))
        except Exception:
            return

    # --- selection ---------------------------------------------------------------------------------
    def selected_node(self) -> str | None:
        return self._selected_key(self.nodes_table)

    def selected_instance(self) -> InstanceRow | None:
        return self.instance_by_key(self._selected_key(self.instances_table))

    def instance_by_key(self, key: str | None) -> InstanceRow | None:
        if key is None or self.health is None:
            return None
        for n in self.health.nodes:
            for i in n.instances:
                if f"{i.node}/{i.instance}" == key:
                    return i
        return None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "instances":
            return
        key = event.row_key.value
        # Follow the row under the cursor, once. A poll refills the table: its first new row posts a
        # highlight that arrives after the cursor is back on the selected row (stale: ignored), and a row
        # already followed is not followed again, so a poll never restarts the journal.
        if key != self._selected_key(self.instances_table) or key == self._journal_for:
            return
        self._journal_for = key
        row = self.instance_by_key(key)
        if row is not None and self.follow_logs:
            self.start_journal(row)

    # --- journal -----------------------------------------------------------------------------------
    def start_journal(self, row: InstanceRow) -> None:
        self.stop_journal()
        log = self.log_pane
        log.clear()
        log.border_title = f"journal: {row.instance} on {row.node}"
        log.write_line(f"-- following edgejar-instance@{row.instance} on {row.node} --")
        self.journal_worker(row.node, row.instance, self._journal_token)

    def stop_journal(self) -> None:
        """Stop the follower: its process is terminated, and a follower still starting stops itself."""
        with self._journal_lock:
            self._journal_token += 1
            proc, self._journal = self._journal, None
        if proc is not None and proc.poll() is None:
            proc.terminate()

    @work(thread=True, group="journal")
    def journal_worker(self, node: str, instance: str, token: int) -> None:
        try:
            proc = self.service.poller.popen(node, actions.journal_command(instance))
        except (OSError, EdgejarError) as exc:
            self.ui(self.journal_line, token, f"cannot follow the journal: {exc}")
            return
        with self._journal_lock:
            current = token == self._journal_token
            if current:
                self._journal = proc
        if not current:  # another instance was selected, or the app exits, while SSH started
            proc.terminate()
            proc.wait()
            return
        assert proc.stdout is not None
        for line in proc.stdout:
            if token != self._journal_token:
                break
            self.ui(self.journal_line, token, line.rstrip("\n"))
        if token == self._journal_token:
            self.ui(self.journal_line, token, f"-- journal follower ended (exit {proc.wait()}) --")
        else:
            proc.terminate()
            proc.wait()

    def journal_line(self, token: int, line: str) -> None:
        """A follower's line (UI thread), shown only while that follower is the current one."""
        if token == self._journal_token:
            self.log_pane.write_line(line)

    def on_unmount(self) -> None:
        self.stop_journal()

    # --- actions -----------------------------------------------------------------------------------
    def action_poll_now(self) -> None:
        self.trigger_poll()

    def action_instance(self, what: str) -> None:
        row = self.selected_instance()
        if row is None:
            self.notify("select an instance first", severity="warning")
            return
        question = f"{what.capitalize()} instance {row.instance} on {row.node}?\n(systemctl {what} over SSH)"

        def answered(yes: bool | None) -> None:
            if yes:
                self.instance_worker(what, row.node, row.instance)

        self.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, group="action")
    def instance_worker(self, what: str, node: str, instance: str) -> None:
        try:
            proc = self.service.poller.run(node, actions.instance_command(what, instance), timeout_s=60)
        except (subprocess.TimeoutExpired, OSError, EdgejarError) as exc:
            self.ui(self.notify, f"{what} {instance} on {node} failed: {exc}", severity="error")
            return
        if proc.returncode == 0:
            self.ui(self.notify, f"{what} {instance} on {node}: done")
        else:
            err = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            self.ui(self.notify, f"{what} {instance} on {node} failed: {err}", severity="error")
        self.ui(self.trigger_poll)

    def action_maintenance(self) -> None:
        node = self.selected_node()
        if node is None or self.health is None:
            self.notify("select a node first", severity="warning")
            return
        on = not self.health.by_name()[node].maintenance
        verb = "Mark" if on else "Take"
        where = "in maintenance" if on else "out of maintenance"
        question = (
            f"{verb} node {node} {where}?\n(writes node_maintenance: {str(on).lower()} to "
            f"host_vars/{node}/{actions.MAINTENANCE_FILE})"
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.maintenance_worker(node, on)

        self.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, group="action")
    def maintenance_worker(self, node: str, on: bool) -> None:
        try:
            with self._lock:
                path = actions.set_maintenance(self.service.cluster.host_vars_dir, node, on)
                self.service.reload_inventory()
                health = self.service.assess()
        except (OSError, EdgejarError) as exc:
            self.ui(self.notify, f"maintenance {node}: {exc}", severity="error")
            return
        self.ui(self.notify, f"{node}: node_maintenance: {str(on).lower()} in {path}")
        self.ui(self.show, health)

    # --- fail over ---------------------------------------------------------------------------------
    def action_failover(self) -> None:
        node = self.selected_node()
        if node is None or self.health is None:
            self.notify("select a node first", severity="warning")
            return
        state = self.health.by_name()[node].status
        if state != Status.UNAVAILABLE:
            self.notify(
                f"{node} is {state.value}: only an UNAVAILABLE node is failed over", severity="warning"
            )
            return
        if self._failing_over:
            self.notify("a fail over is already running", severity="warning")
            return
        self._failing_over = True
        self.failover_plan_worker(node)

    @work(thread=True, group="action")
    def failover_plan_worker(self, node: str) -> None:
        """Plan (reads the inventory and the experiment files, writes nothing), then ask on the UI thread."""
        try:
            with self._lock:
                plan = self.failover.plan([node])
        except fo.FailoverInfeasible as exc:
            self.placement_failures += len(exc.unplaced)
            self._failing_over = False
            self.ui(self.log_failover, [f"fail over {node}: {exc}"])
            self.ui(self.notify, f"fail over {node}: no room elsewhere", severity="error")
            return
        except Exception as exc:  # bad files, unreadable inventory: shown, never fatal to the monitor
            self._failing_over = False
            self.ui(self.notify, f"fail over {node}: {exc}", severity="error")
            return
        if not plan.needed:
            self._failing_over = False
            self.ui(self.notify, f"fail over {node}: no instances there, nothing to move")
            return
        self.ui(self.confirm_failover, plan)

    def confirm_failover(self, plan: fo.Plan) -> None:
        lines = plan.describe()
        shown = lines[:4] + ([f"... and {len(lines) - 4} more"] if len(lines) > 4 else [])
        question = (
            f"Fail over {', '.join(plan.dead)}?\n"
            + "\n".join(shown)
            + f"\n(deploy + launch on {', '.join(plan.live)})"
        )

        def answered(yes: bool | None) -> None:
            if not yes:
                self._failing_over = False
                return
            self.log_failover([f"fail over {', '.join(plan.dead)}:", *lines])
            self.failover_worker(plan)

        self.push_screen(ConfirmScreen(question), answered)

    def log_failover(self, lines: list[str]) -> None:
        """The log pane shows the fail over instead of a journal (UI thread)."""
        self.stop_journal()
        self._journal_for = None
        self.log_pane.clear()
        self.log_pane.border_title = "fail over"
        for line in lines:
            self.log_pane.write_line(line)

    @work(thread=True, group="action")
    def failover_worker(self, plan: fo.Plan) -> None:
        """Write the placement, deploy and launch on the live nodes; per-host progress in the log pane."""
        out = LogStream(lambda line: self.ui(self.log_pane.write_line, line))
        try:
            outcome = self.failover.apply(plan, out=cast(TextIO, out))
        except Exception as exc:
            self.ui(self.notify, f"fail over {', '.join(plan.dead)} failed: {exc}", severity="error")
            self.ui(self.log_pane.write_line, f"fail over failed: {exc}")
            return
        finally:
            self._failing_over = False
            out.flush()
        with contextlib.suppress(EdgejarError), self._lock:
            self.service.reload_inventory()  # the new placement
        dead = ", ".join(plan.dead)
        if outcome.ok:
            moved = ", ".join(f"{m.instance} -> {m.target}" for m in plan.moves)
            self.ui(self.notify, f"fail over {dead}: done ({moved})")
            self.ui(self.log_pane.write_line, f"fail over {dead}: done")
        else:
            message = fo.failure_message(outcome)
            self.ui(self.notify, message, severity="error")
            for line in message.splitlines():
                self.ui(self.log_pane.write_line, line)
        self.ui(self.trigger_poll)


class LogStream:
    """A text stream for the playbooks' progress: each complete line goes to `emit` (the log pane)."""

    def __init__(self, emit: Callable[[str], object]) -> None:
        self.emit = emit
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self.emit(line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self.emit(line)

    def isatty(self) -> bool:
        return False
