"""Split assignment: deterministic from tweet ids, stratified by label, source splits kept, translations aligned."""

import random
from collections import Counter

import pytest

from dataset_script.splits import assign_splits, tweet_id_hash
from dataset_script.schema import TweetRecord


def _record(tweet_id, label, config="de", translated=False, source_split=None):
    return TweetRecord(tweet_id, "text", label, config, config[:2], "test", translated=translated, source_split=source_split)


def _rows(n_per_label, config="de", prefix="1"):
    return [_record(f"{prefix}{label_index}{i:05d}", label, config) for label_index, label in enumerate(("negative", "neutral", "positive")) for i in range(n_per_label)]


def test_hash_is_stable_across_runs():
    # A pinned value: splits published on the Hub must not move between runs, machines or Python versions
    # (Python's hash() changes with PYTHONHASHSEED).
    assert tweet_id_hash("1222618809162444800") == 0x21D3CAB1B7F45D91


def test_carved_splits_are_stratified_per_label():
    records = _rows(40)
    splits = assign_splits(records)
    by_split_label = Counter((split, record.label) for record, split in zip(records, splits))
    for label in ("negative", "neutral", "positive"):
        assert by_split_label[("test", label)] == 4
        assert by_split_label[("validation", label)] == 4
        assert by_split_label[("train", label)] == 32


def test_assignment_depends_on_ids_not_on_input_order():
    records = _rows(25)
    expected = dict(zip((r.tweet_id for r in records), assign_splits(records)))
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    assert dict(zip((r.tweet_id for r in shuffled), assign_splits(shuffled))) == expected


def test_source_splits_are_kept_and_missing_test_is_carved_from_train():
    train = [_record(f"t{i}", ("negative", "neutral", "positive")[i % 3], "umsab_de", source_split="train") for i in range(60)]
    validation = [_record(f"v{i}", "neutral", "umsab_de", source_split="validation") for i in range(7)]
    splits = assign_splits(train + validation)
    assert splits[60:] == ["validation"] * 7
    assert Counter(splits[:60]) == {"train": 54, "test": 6}


def test_translations_inherit_the_split_of_their_original_tweet():
    originals = _rows(30, config="en")
    translations = [_record(r.tweet_id, r.label, "de_mt", translated=True) for r in originals[::2]]
    # Translations come first in the input: the rule must not depend on order.
    splits = assign_splits(translations + originals)
    split_of_original = dict(zip((r.tweet_id for r in originals), splits[len(translations):]))
    for record, split in zip(translations, splits):
        assert split == split_of_original[record.tweet_id]


def test_tiny_config_gets_no_rows_in_a_split_rather_than_failing():
    splits = assign_splits([_record("1", "negative"), _record("2", "positive")])
    assert splits == ["train", "train"]


def test_unknown_source_split_is_an_error_naming_the_tweet():
    with pytest.raises(ValueError, match="dev"):
        assign_splits([_record("42", "neutral", source_split="dev")])


def test_a_source_with_all_splits_is_never_carved_even_if_a_config_lacks_one():
    # The demo generator assigns all three splits; a small language may happen to get no validation row.
    records = [_record(f"a{i}", "neutral", "de", source_split="train") for i in range(30)]
    records.append(_record("b", "neutral", "en", source_split="validation"))
    records.append(_record("c", "neutral", "en", source_split="test"))
    assert assign_splits(records)[:30] == ["train"] * 30
