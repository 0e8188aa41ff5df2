"""Cells of the monitor's tables as Rich Text: status colours, memory bars, ages. Pure."""

from __future__ import annotations

from rich.text import Text

from runner.health.model import InstanceRow, NodeHealth, Status

GIB = 1024**3
MIB = 1024**2
STATUS_STYLE = {
    Status.HEALTHY: "bold green",
    Status.DEGRADED: "bold yellow",
    Status.UNAVAILABLE: "bold red",
    Status.MAINTENANCE: "bold blue",
}
BAR_WIDTH = 10


def bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """A bar like '████░░░░░░', green below 75 %, yellow below 90 %, red above."""
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    style = "green" if fraction < 0.75 else "yellow" if fraction < 0.90 else "red"
    return Text("█" * full, style=style) + Text("░" * (width - full), style="dim")


def status_cell(n: NodeHealth) -> Text:
    return Text(n.status.value, style=STATUS_STYLE[n.status])


def memory_cell(n: NodeHealth) -> Text:
    """Used memory against the node's node_ram_gb; the measured total too when it differs (a ceiling)."""
    s = n.sample
    if s is None:
        return Text(f"{'?':>{BAR_WIDTH}} ?/{n.ram_gb:g} GiB", style="dim")
    capacity = n.ram_gb * GIB or s.mem_total_bytes
    out = bar(s.mem_used_bytes / capacity if capacity else 0.0)
    out.append(f" {s.mem_used_bytes / GIB:.1f}/{n.ram_gb:g} GiB")
    if abs(s.mem_total_bytes - n.ram_gb * GIB) > 0.05 * GIB * max(1.0, n.ram_gb):
        out.append(f" (measured {s.mem_total_bytes / GIB:.1f})", style="dim")
    return out


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def seen_cell(n: NodeHealth, stale_after_s: float) -> Text:
    """When the node last answered; red when older than stale_after_s."""
    text = age(n.last_ok_age_s)
    stale = n.last_ok_age_s is None or n.last_ok_age_s > stale_after_s
    return Text(text + (" ago" if n.last_ok_age_s is not None else ""), style="red" if stale else "")


def gpu_cell(n: NodeHealth) -> str:
    s = n.sample
    if not n.gpu:
        return "-"
    parts = []
    if s is not None and s.gpu_load_pct is not None:
        parts.append(f"{s.gpu_load_pct:.0f}%")
    if s is not None and s.max_temp_c is not None:
        parts.append(f"{s.max_temp_c:.0f}C")
    return " ".join(parts) or "yes"


def rss_cell(i: InstanceRow) -> Text:
    if i.memory_bytes is None:
        return Text("-", style="dim")
    if not i.memory_max_bytes:
        return Text(f"{i.memory_bytes / MIB:.0f}M / no ceiling", style="yellow")
    out = bar(i.memory_bytes / i.memory_max_bytes)
    out.append(f" {i.memory_bytes / MIB:.0f}/{i.memory_max_bytes / MIB:.0f}M")
    return out


def state_cell(i: InstanceRow) -> Text:
    style = "green" if i.running else "red" if i.state.startswith("failed") else "yellow"
    return Text(i.state, style=style)


def lives_cell(i: InstanceRow) -> str:
    """lives/deaths from the records database; before it has them, deaths = systemd's NRestarts."""
    lives = "-" if i.stats.lives is None else str(i.stats.lives)
    deaths = i.stats.deaths if i.stats.deaths is not None else i.restarts
    return f"{lives}/{'-' if deaths is None else deaths}"


def optional(value: float | int | None, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def last_message_cell(i: InstanceRow, now: float) -> str:
    if i.stats.last_message_at is None:
        return "-"
    return age(max(0.0, now - i.stats.last_message_at)) + " ago"


# A training unit's row (edgejar-train@): its step, samples/s and loss where an instance shows its cycle,
# tokens/s and last message.
def progress_cell(i: InstanceRow) -> str:
    return f"step {i.stats.step}" if i.stats.step is not None else optional(i.stats.cycle)


def rate_cell(i: InstanceRow) -> str:
    if i.stats.samples_per_s is not None:
        return f"{i.stats.samples_per_s:.0f} smp/s"
    return optional(i.stats.tokens_per_s, "{:.1f}")


def last_cell(i: InstanceRow, now: float) -> str:
    if i.stats.loss is not None:
        return f"loss {i.stats.loss:.4g}"
    return last_message_cell(i, now)
