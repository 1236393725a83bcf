"""Builds a Hub-format dataset directory from inputs: read -> screen -> split -> write shards -> card + report.

The directory is built next to the target (`.<name>.partial-<process id>`) and swapped in only when complete, so
a failed or killed build never leaves a half-written dataset behind: the output path holds the previous complete
build, the new one, or (killed between the two renames of the swap) nothing; rerunning the build finishes it and
deletes what killed builds left. Rebuilding the same inputs gives byte-identical files. Several processes (e.g. DDP
ranks) should not build the same directory at once: build on the main process first.
"""

import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from dataset_script.card import LICENSE_FILE, render_card, render_license, with_all_config
from dataset_script.report import REPORT_FILE, BuildReport
from dataset_script.schema import SPLITS, Source
from dataset_script.screening import screen
from dataset_script.splits import assign_splits
from dataset_script.writer import DEFAULT_MAX_SHARD_BYTES, write_split
from m2sa_files.atomic import partial_path, remove_leftovers, replace_directory


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.is_file():
        raise FileExistsError(f"--out {out_dir} is a file; pass a directory.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / REPORT_FILE).is_file():
        raise FileExistsError(
            f"{out_dir} is not empty and holds no {REPORT_FILE}, so it is not a dataset built by dataset_script. "
            f"Choose another output directory or empty this one."
        )


def build_dataset(
    out_dir: Path,
    sources: Sequence[Source],
    pretty_name: str = "M2SA",
    summary: str = "",
    build_parameters: dict | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    show_progress: bool = True,
) -> BuildReport:
    """Build `out_dir` (Parquet shards under `data/<config>/`, `README.md`, `LICENSE.md`, `build_report.json`) from
    `sources`.

    `summary` is a paragraph for the card; `build_parameters` are recorded in the report (e.g. to detect a
    stale demo set). Returns the report, which accounts for every input row.
    """
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    staging = partial_path(out_dir)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        report = BuildReport(build_parameters=dict(build_parameters or {}))
        records = []
        for source in sources:
            rows = tqdm(source.records, desc=f"reading {source.info.name}", unit=" rows", disable=not show_progress)
            records += screen(rows, report)
        if not records:
            dropped = report.to_dict()["dropped_by_reason"]
            raise ValueError(f"No input row could be kept ({report.rows_in} rows in, dropped: {dropped}).")

        rows_by_split = defaultdict(list)
        for record, split in zip(records, assign_splits(records)):
            rows_by_split[(record.config, split)].append(record)
        shards: dict[str, dict[str, list[str]]] = {}
        with tqdm(total=len(records), desc="writing shards", unit=" rows", disable=not show_progress) as bar:
            for config, split in sorted(rows_by_split, key=lambda key: (key[0], SPLITS.index(key[1]))):
                paths = write_split(
                    rows_by_split[(config, split)], staging / "data" / config, split, report, max_shard_bytes, bar.update
                )
                shards.setdefault(config, {})[split] = [path.relative_to(staging).as_posix() for path in paths]
        report.check_balance()

        card = render_card(
            with_all_config(shards),
            report,
            [source.info for source in sources],
            languages=sorted({record.language for record in records}),
            pretty_name=pretty_name,
            summary=summary,
        )
        (staging / "README.md").write_text(card, encoding="utf-8")
        (staging / LICENSE_FILE).write_text(render_license([source.info for source in sources]), encoding="utf-8")
        report.write(staging)
        replace_directory(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report
