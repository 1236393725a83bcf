"""The names the model and the data share, with no dependency: the sentiment classes and the suffix of a
machine-translated set. The model's config, its language awareness and the dataset builder (which must not load torch)
all import them from here."""

LABEL_NAMES = ("negative", "neutral", "positive")
"""The three sentiment classes in label-id order (0, 1, 2): the `label` ClassLabel of every dataset config, a
classifier's default `id2label`, and the order of every metric's classes."""
TRANSLATED_SUFFIX = "_mt"
"""A machine-translated set is its language's code with this suffix (`de_mt`): a config of the built dataset, and an
entry of a model's `training_languages` when it learned from such rows."""
