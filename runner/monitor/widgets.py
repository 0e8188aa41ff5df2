"""The monitor's own widgets: the log pane and a yes/no confirmation dialog."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import ModalScreen
from textual.widgets import Button, Label, RichLog


class LogPane(RichLog):
    """Plain text lines (a journal, a fail over's progress), never wrapped, never read as markup.

    A RichLog, not Textual's Log: Log measures each new line in a thread worker that reports back with
    call_from_thread, which waits for ever when the app exits meanwhile (the monitor then hung on exit
    while a journal was streaming)."""

    def __init__(self, *, id: str, max_lines: int) -> None:
        super().__init__(id=id, max_lines=max_lines, wrap=False, markup=False, highlight=False)

    def write_line(self, line: str) -> None:
        self.write(Text(line))

    @property
    def text_lines(self) -> list[str]:
        """The lines shown, as text."""
        return [strip.text for strip in self.lines]


class ConfirmScreen(ModalScreen[bool]):
    """Ask a question; dismisses with True (y / Yes) or False (n / Escape / No)."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Grid {
        grid-size: 2; grid-gutter: 1 2; grid-rows: 1fr 3; padding: 0 1;
        width: 70; height: 11; border: thick $warning 80%; background: $surface;
    }
    ConfirmScreen #question { column-span: 2; height: 1fr; width: 1fr; content-align: center middle; }
    ConfirmScreen Button { width: 100%; }
    """
    BINDINGS = [  # noqa: RUF012 (Textual's own convention)
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Grid(
            Label(self.question, id="question"),
            Button("Yes (y)", variant="error", id="yes"),
            Button("No (n)", variant="primary", id="no"),
        )

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
