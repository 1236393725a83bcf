"""Screening: decide which input rows are carried over, reporting every other row with its reason."""

from collections.abc import Iterable

from dataset_script.report import BuildReport, ReportedRow
from dataset_script.schema import LABEL_NAMES, TweetRecord


def _drop_reason(record: TweetRecord, kept_labels: dict) -> tuple[str, str] | None:
    if record.label is None:
        return "null_label", "label is null"
    if record.label not in LABEL_NAMES:
        return "unknown_label", f"label {record.label!r}"
    if record.fault is not None:
        return record.fault.reason, record.fault.detail
    if record.text is None or not record.text.strip():
        return "empty_text", f"text {record.text!r}"
    kept_label = kept_labels.get((record.config, record.tweet_id))
    if kept_label is not None:
        agreement = "same label" if kept_label == record.label else f"conflicting label: kept {kept_label!r}"
        return "duplicate_id", f"already kept in config {record.config!r} ({agreement}, this row {record.label!r})"
    return None


def screen(records: Iterable[TweetRecord], report: BuildReport) -> list[TweetRecord]:
    """The records to write, in input order; every other record is added to `report.dropped`."""
    kept, kept_labels = [], {}
    for record in records:
        report.rows_in += 1
        problem = _drop_reason(record, kept_labels)
        if problem is None:
            kept.append(record)
            kept_labels[(record.config, record.tweet_id)] = record.label
        else:
            reason, detail = problem
            report.drop(ReportedRow(record.tweet_id, record.config, record.source, reason, detail))
    return kept
