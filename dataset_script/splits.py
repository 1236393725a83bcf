"""Train / validation / test assignment: fixed, stratified by label and derived from the tweet id alone.

Rules, applied config by config (non-translated configs first, in name order):

1. A tweet id gets one split for the whole build: a translated row (`de_mt`) or a repeat of an id in another
   config inherits the split the id already has, so a translation never leaks the test tweet it came from.
2. A split the source provides (`source_split`, e.g. UMSAB's train / val) is kept.
3. The splits a source lacks (MVSA: all; UMSAB: test; the M2SA release: all) are carved out of the train rows
   (or rows without a split) of that source in each config: within each label, rows are ordered by a stable
   hash of the tweet id (BLAKE2b, not Python's seeded `hash()`) and the first 10 % become test, the next 10 %
   validation (rounded half up per label, so tiny configs may have no rows in a split).

No random generator or training seed is involved: the same ids always give the same splits.
"""

import hashlib
from collections import defaultdict
from collections.abc import Sequence

from dataset_script.schema import SPLITS, TweetRecord

CARVED_FRACTIONS = {"test": 0.1, "validation": 0.1}
"""Share of a config's train rows (per label) that becomes each split the source does not provide."""


def tweet_id_hash(tweet_id: str) -> int:
    """A stable 64-bit hash of a tweet id, the same on every machine and Python run."""
    return int.from_bytes(hashlib.blake2b(tweet_id.encode("utf-8"), digest_size=8).digest(), "big")


def _round_half_up(value: float) -> int:
    return int(value + 0.5)


def carve_splits(ids: Sequence[str], labels: Sequence, missing_splits: Sequence[str]) -> list[str]:
    """The split of each row of a train set that lacks `missing_splits` (same order as `ids` and `labels`).

    Per label, rows are ordered by the hash of their id; the first `CARVED_FRACTIONS[split]` of them go to each
    missing split in turn and the rest stay "train". The dataset builder carves by tweet id; training carves
    datasets that come without validation or test rows the same way (by an id column or a hash of the content).
    """
    positions_by_label = defaultdict(list)
    for position, label in enumerate(labels):
        positions_by_label[label].append(position)
    splits = ["train"] * len(ids)
    for positions in positions_by_label.values():
        ordered = sorted(positions, key=lambda p: (tweet_id_hash(ids[p]), ids[p]))
        start = 0
        for split in missing_splits:
            size = _round_half_up(len(ordered) * CARVED_FRACTIONS[split])
            for position in ordered[start : start + size]:
                splits[position] = split
            start += size
    return splits


def assign_splits(records: Sequence[TweetRecord]) -> list[str]:
    """The split of each record (same order as `records`), which must already be screened (valid labels)."""
    provided_by_source = defaultdict(set)
    indices_by_config = defaultdict(list)
    for index, record in enumerate(records):
        if record.source_split is not None and record.source_split not in SPLITS:
            raise ValueError(
                f"Tweet {record.tweet_id} of config {record.config!r} has source split {record.source_split!r}; "
                f"a reader must map its source's splits to one of {SPLITS}."
            )
        provided_by_source[record.source].add(record.source_split)
        indices_by_config[(record.translated, record.config)].append(index)

    split_of_id: dict[str, str] = {}
    splits: list[str | None] = [None] * len(records)
    for _, indices in sorted(indices_by_config.items()):
        train_indices_by_missing = defaultdict(list)
        for index in indices:
            record = records[index]
            splits[index] = split_of_id.get(record.tweet_id) or record.source_split
            if splits[index] in (None, "train") and record.tweet_id not in split_of_id:
                missing = tuple(s for s in CARVED_FRACTIONS if s not in provided_by_source[record.source])
                train_indices_by_missing[missing].append(index)
        for missing, train_indices in sorted(train_indices_by_missing.items()):
            carved = carve_splits([records[i].tweet_id for i in train_indices],
                                  [records[i].label for i in train_indices], missing)
            for index, split in zip(train_indices, carved):
                splits[index] = split
        for index in indices:
            split_of_id.setdefault(records[index].tweet_id, splits[index])
    return splits
