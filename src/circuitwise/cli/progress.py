"""Drawing the library's progress callbacks: rich bars on a terminal, plain lines otherwise.

The library only calls ``step(label, done, total)`` and ``message(text)``; what the user sees is
decided here. A stage that ends within :data:`SHOW_AFTER_S` shows nothing, so quick runs stay
quiet. On a terminal each longer stage gets a bar with its count and the time left; when the
output is a file or a pipe, a line every tenth of the way, with the time left, instead.
Commands with ``--json`` draw on stderr, so stdout holds only the JSON.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

SHOW_AFTER_S = 2.0


class Bars:
    def __init__(self, console: Console, *, live: bool | None = None):
        self.console = console
        self.live = console.is_terminal if live is None else live
        self._bars: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._start: dict[str, float] = {}
        self._tenth: dict[str, int] = {}
        self._stage: Any = None

    def __enter__(self) -> "Bars":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def message(self, text: str) -> None:
        """A stage starts (or a note): logged; on a terminal the stage also shows its elapsed time."""
        if not self.live:
            self.console.print(Text(text), highlight=False)
            return
        bars = self._progress()
        bars.console.log(Text(text))  # above the bars, which stay in place
        if text.startswith("note:"):
            return
        if self._stage is not None:
            bars.remove_task(self._stage)
        self._stage = bars.add_task(text, total=None, counts="", left="")

    def step(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        start = self._start.setdefault(label, now)
        if done < 1:
            return
        if label not in self._tasks and label not in self._tenth and (now - start < SHOW_AFTER_S or done >= total):
            return  # a quick stage: nothing to show
        if self.live:
            self._bar(label, done, total, now - start)
        else:
            self._line(label, done, total, now - start)

    def _progress(self) -> Progress:
        if self._bars is None:
            self._bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
                                  TimeElapsedColumn(), TextColumn("{task.fields[left]}"),
                                  console=self.console, transient=True)
            self._bars.start()
        return self._bars

    def _bar(self, label: str, done: int, total: int, elapsed: float) -> None:
        bars = self._progress()
        left = f"about {_duration(elapsed / done * (total - done))} left"
        if label not in self._tasks:
            self._tasks[label] = bars.add_task(label, total=total, counts="", left="")
            # The bar appears after SHOW_AFTER_S; its clock should count from the stage's start.
            task = next(t for t in bars.tasks if t.id == self._tasks[label])
            task.start_time = bars.get_time() - elapsed
        bars.update(self._tasks[label], completed=done, total=total, counts=f"{done}/{total}", left=left)
        if done >= total:
            bars.remove_task(self._tasks.pop(label))
            self._tenth[label] = 10  # finished: never shown again under this label

    def _line(self, label: str, done: int, total: int, elapsed: float) -> None:
        tenth = int(10 * done / max(total, 1))
        if self._tenth.get(label) == tenth:
            return
        self._tenth[label] = tenth
        left = elapsed / done * (total - done)
        tail = f", about {_duration(left)} left" if done < total else f", {_duration(elapsed)}"
        self.console.print(f"{label}: {done}/{total}{tail}", highlight=False, markup=False)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


__all__ = ["Bars", "SHOW_AFTER_S"]
