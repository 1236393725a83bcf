"""The sentiment classes, with no dependency: the model's config and the dataset builder (which must not load torch)
both import them from here."""

LABEL_NAMES = ("negative", "neutral", "positive")
"""The three sentiment classes in label-id order (0, 1, 2): the `label` ClassLabel of every dataset config, a
classifier's default `id2label`, and the order of every metric's classes."""
