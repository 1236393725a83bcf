"""The dataset code stands alone: building, the demo set and the card never load the model code, torch or
transformers (seconds and hundreds of MiB for a job that only writes Parquet); of the model package they read only
the dependency-free label names."""

import json
import subprocess
import sys

from conftest import REPO_ROOT

HEAVY_PACKAGES = ("modeling_m2sa", "m2sa_training", "torch", "transformers")
LABEL_MODULES = ["modeling_m2sa", "modeling_m2sa.labels_m2sa"]  # the lazy package and its dependency-free labels

# Imports `datasets` alone first, so that a failure says whether our code or `datasets` itself pulled them in.
IMPORT_SCRIPT = f"""
import json, sys
heavy = lambda: sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY_PACKAGES!r})
import datasets
by_datasets = heavy()
import dataset_script.build, dataset_script.demo, dataset_script.card
print(json.dumps({{"datasets": by_datasets, "dataset_script": heavy()}}))
"""


def test_dataset_script_loads_neither_the_model_package_nor_torch_nor_transformers():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["datasets"] == [], "`datasets` itself now imports these; dataset_script cannot avoid them"
    assert loaded["dataset_script"] == LABEL_MODULES


def test_the_dataset_labels_are_the_models_own():
    """One list of label names for both sides: a different order would silently swap classes between the dataset's
    label ids and the model's."""
    from dataset_script.schema import FEATURES, LABEL_NAMES
    from modeling_m2sa import M2SAConfig, labels_m2sa

    assert LABEL_NAMES is labels_m2sa.LABEL_NAMES
    assert FEATURES["label"].names == M2SAConfig().label_names == ["negative", "neutral", "positive"]
