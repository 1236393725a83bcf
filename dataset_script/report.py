"""The build report: accounts for every input row, so that nothing is dropped silently.

    rows_in = rows_out + rows_dropped
    rows_dropped = sum of the dropped reasons below
    rows_kept_with_warning (unreadable_image) is a part of rows_out, not of rows_dropped

Each dropped row is listed once, with the first reason that applies, in this order.
"""

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dataset_script.schema import LABEL_NAMES

DROP_REASONS = {
    "null_label": "the source gives no label",
    "unknown_label": f"the label is not one of {', '.join(LABEL_NAMES)}",
    "missing_from_dump": "the tweet's text is not in the local dump (or its text file is missing)",
    "undecodable_text": "the text file is neither UTF-8 nor GBK",
    "empty_text": "the text is empty or only white space",
    "duplicate_id": "an earlier row with the same tweet id was already kept in this config",
}
WARNING_REASONS = {
    "unreadable_image": "the image could not be decoded; the tweet is kept with image=None",
}

REPORT_FILE = "build_report.json"


@dataclass(frozen=True)
class ReportedRow:
    """A row that was dropped, or kept with a warning, and why."""

    tweet_id: str
    config: str
    source: str
    reason: str
    detail: str


@dataclass
class BuildReport:
    """Counts of a build, filled by screening (rows in, dropped) and by the writer (rows out, warnings)."""

    rows_in: int = 0
    dropped: list[ReportedRow] = field(default_factory=list)
    warnings: list[ReportedRow] = field(default_factory=list)
    label_counts: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(Counter)))
    image_counts: dict = field(default_factory=lambda: defaultdict(Counter))
    build_parameters: dict = field(default_factory=dict)

    def drop(self, row: ReportedRow) -> None:
        if row.reason not in DROP_REASONS:
            raise ValueError(f"Unknown drop reason {row.reason!r}; add it to DROP_REASONS with a description.")
        self.dropped.append(row)

    def warn(self, row: ReportedRow) -> None:
        if row.reason not in WARNING_REASONS:
            raise ValueError(f"Unknown warning reason {row.reason!r}; add it to WARNING_REASONS with a description.")
        self.warnings.append(row)

    def count_written(self, config: str, split: str, label: str, has_image: bool) -> None:
        self.label_counts[config][split][label] += 1
        self.image_counts[config][split] += int(has_image)

    @property
    def rows_out(self) -> int:
        return sum(sum(counts.values()) for splits in self.label_counts.values() for counts in splits.values())

    def check_balance(self) -> None:
        """Raise if some input row is neither written nor reported (a bug in the builder, not in the data)."""
        if self.rows_in != self.rows_out + len(self.dropped):
            raise RuntimeError(
                f"Build report does not balance: {self.rows_in} rows in, {self.rows_out} written, "
                f"{len(self.dropped)} dropped. Please report this as a bug of dataset_script."
            )

    def to_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_dropped": len(self.dropped),
            "rows_kept_with_warning": len(self.warnings),
            "arithmetic": "rows_in = rows_out + rows_dropped; rows_kept_with_warning are part of rows_out",
            "dropped_by_reason": {reason: n for reason, n in sorted(Counter(r.reason for r in self.dropped).items())},
            "warnings_by_reason": {reason: n for reason, n in sorted(Counter(r.reason for r in self.warnings).items())},
            "reasons": {**DROP_REASONS, **WARNING_REASONS},
            "configs": {
                config: {
                    split: {
                        "rows": sum(counts.values()),
                        "with_image": self.image_counts[config][split],
                        "labels": {label: counts[label] for label in LABEL_NAMES},
                    }
                    for split, counts in splits.items()
                }
                for config, splits in sorted(self.label_counts.items())
            },
            "build_parameters": self.build_parameters,
            "dropped": [asdict(row) for row in self.dropped],
            "warnings": [asdict(row) for row in self.warnings],
        }

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / REPORT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


def read_report(out_dir: Path) -> dict:
    """The report of a built dataset directory, as written by `BuildReport.write`."""
    return json.loads((Path(out_dir) / REPORT_FILE).read_text(encoding="utf-8"))
