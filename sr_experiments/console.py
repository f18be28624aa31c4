"""What a user waiting on a command sees: progress on every wait of more than a few seconds, as a
bar on a terminal and as a plain line every ``LINE_EVERY`` of the way in a redirected log (a file,
a CI log: carriage-return bars would fill it), and one formatted line per log record.

tqdm draws the bars; the periodic lines and Lightning's routing are written here because neither
tqdm nor Lightning decides by whether the output is a terminal (tqdm's ``disable=None`` turns the
bar off without saying anything instead).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

# A redirected log gets a line at every quarter of a wait (training: every tenth, it is longer)...
LINE_EVERY = 0.25
# ...but only once the wait is longer than this: a 2-second set needs no progress lines.
QUIET_S = 5.0
log = logging.getLogger(__name__)


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced by an object without isatty
        return False


class ProgressLines:
    """The plain-line form of a bar: ``desc: 50% (6/12 it), 7.1 s, ~7 s left`` each time the share
    done crosses a multiple of ``every``, once ``quiet_s`` have passed; to ``stream`` (stderr), or
    given to ``write`` (e.g. a logger's ``info``)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", every: float = LINE_EVERY,
                 quiet_s: float = QUIET_S, stream: IO[str] | None = None,
                 write: Callable[[str], Any] | None = None) -> None:
        self.total, self.desc, self.unit, self.every, self.quiet_s = total, desc, unit, every, quiet_s
        self.stream, self.write = stream, write
        self.done = self.begin = 0
        self.mark, self.start, self.said = 1, time.perf_counter(), False

    def resume_from(self, done: int) -> None:
        """Count on from ``done`` (a resumed run): the time left is from the rate since now."""
        self.done = self.begin = done
        if self.total:
            self.mark = int(done / self.total / self.every + 1e-9) + 1

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self.total:
            return
        share = self.done / self.total
        if share + 1e-9 < self.mark * self.every:
            return
        while self.mark * self.every <= share + 1e-9:
            self.mark += 1
        elapsed = time.perf_counter() - self.start
        if elapsed < self.quiet_s and not self.said:
            return  # a short wait: no lines at all (once started, a wait's lines go on to the end)
        rate = (self.done - self.begin) / max(elapsed, 1e-9)
        left = f", ~{(self.total - self.done) / rate:.0f} s left" if share < 1 and rate > 0 else ""
        self.emit(f"{self.desc}: {share:.0%} ({self.done}/{self.total} {self.unit}), {elapsed:.1f} s{left}"
                  + (f", {note}" if note else ""))

    def emit(self, line: str) -> None:
        self.said = True
        if self.write is not None:
            self.write(line)
        else:
            print(line, file=self.stream or sys.stderr, flush=True)


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    *,
    enabled: bool = True,
    every: float = LINE_EVERY,
    quiet_s: float = QUIET_S,
    stream: IO[str] | None = None,
) -> Iterator[T]:
    """``iterable``'s items, with progress on ``stream`` (default stderr): a tqdm bar (gone when
    done) on a terminal, else a line at every ``every`` share once ``quiet_s`` have passed."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not enabled:
        yield from iterable
        return
    if is_terminal(stream):
        from tqdm import tqdm

        yield from tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=stream or sys.stderr, delay=1.0)
        return
    lines = ProgressLines(total, desc, unit, every, quiet_s, stream)
    for item in iterable:
        yield item
        lines.update()


class ProgressCounter:
    """``progress`` for work counted by callbacks rather than iterated: ``update(n)`` as it goes,
    ``close()`` at the end."""

    def __init__(self, total: int, desc: str, unit: str = "it", *, enabled: bool = True, every: float = LINE_EVERY,
                 quiet_s: float = QUIET_S, stream: IO[str] | None = None) -> None:
        self.bar = self.lines = None
        if enabled and is_terminal(stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=stream or sys.stderr, delay=1.0)
        elif enabled:
            self.lines = ProgressLines(total, desc, unit, every, quiet_s, stream)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines is not None:
            self.lines.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def announce(logger: logging.Logger, message: str) -> None:
    """``message`` as an INFO record of ``logger`` where logging prints INFO (a Hydra job), else as a
    line on stderr: a command about to make its user wait says so, configured or not."""
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def one_line_per_record() -> None:
    """Lightning's log records, once, in the configured format: where logging is configured (a Hydra
    job's root handlers), Lightning's own console handlers (``lightning`` gets one at import,
    printing each record a second time as ``INFO: ...``) are removed and its records propagate to the
    root."""
    root = logging.getLogger()
    if not root.handlers:
        return  # nothing configured: Lightning's handlers are the only ones that print
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's own (a FileHandler would be the user's)
                logger.removeHandler(handler)
        logger.propagate = True
