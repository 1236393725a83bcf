"""Progress of a scoring job: a tqdm bar with rows/s and ETA on a terminal; in a log (not a TTY), one plain line at
most every `LOG_INTERVAL_SECONDS` instead of a bar's carriage returns."""

import sys
import time
from datetime import timedelta

from tqdm.auto import tqdm

LOG_INTERVAL_SECONDS = 30.0


class Progress:
    """Counts rows scored; `total` None (a streamed corpus) shows the count and rate without an ETA."""

    def __init__(self, total, enabled=True, label="labelling", stream=None):
        self.total, self.enabled, self.label = total, enabled, label
        self.stream = stream or sys.stderr
        self.done, self.started, self.last_line = 0, time.monotonic(), None
        interactive = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.bar = tqdm(total=total, unit="rows", unit_scale=True, desc=label, file=self.stream,
                        dynamic_ncols=True) if interactive else None

    def advance(self, rows):
        if not self.enabled:
            return
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
            return
        now = time.monotonic()
        if self.last_line is None or now - self.last_line >= LOG_INTERVAL_SECONDS:
            self.last_line = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now):
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total is None:
            return f"{self.label}: {self.done:,} rows, {rate:,.1f} rows/s"
        remaining = (self.total - self.done) / rate if rate else float("inf")
        eta = str(timedelta(seconds=round(remaining))) if remaining != float("inf") else "?"
        return (f"{self.label}: {self.done:,} of {self.total:,} rows ({self.done / max(self.total, 1):.0%}), "
                f"{rate:,.1f} rows/s, ETA {eta}")

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done:
            print(self.line(time.monotonic()), file=self.stream, flush=True)
