"""The names the model and the data share, with no dependency: the sentiment classes, the suffix of a
machine-translated set and the tag of a model trained on the synthetic demo set. The model's config, its language
awareness, its card and the dataset builder (which must not load torch) all import them from here; the Space reads
them from the served model's code."""

LABEL_NAMES = ("negative", "neutral", "positive")
"""The three sentiment classes in label-id order (0, 1, 2): the `label` ClassLabel of every dataset config, a
classifier's default `id2label`, and the order of every metric's classes."""
TRANSLATED_SUFFIX = "_mt"
"""A machine-translated set is its language's code with this suffix (`de_mt`): a config of the built dataset, and an
entry of a model's `training_languages` when it learned from such rows."""
SYNTHETIC_DEMO_TAG = "m2sa-synthetic-demo"
"""The model-card tag of a model trained on the embedded synthetic demo set, whose answers are not real sentiment: the
Space reads it to say so on its page."""
