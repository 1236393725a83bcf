"""Labelling a whole corpus with a saved M2SA model (`python -m m2sa_training.score`): `run` (options, the loop and
the report), `corpus` (reading the input), `images` (fetching and checking images), `output` (the Parquet shards)
and `progress`."""

from .run import ScoringOptions, label_corpus

__all__ = ["ScoringOptions", "label_corpus"]
