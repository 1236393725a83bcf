"""Export a saved M2SA classifier with this package's code, optionally measuring its agreement record or setting the
backend it serves.

    python -m modeling_m2sa.export --model DIR_OR_HUB_ID --out DIR [--dataset DIR_OR_ID [--dataset-config all]]
                                   [--backend auto|fp32|bf16|int8]

The output is the same model (fp32 weights, its processor) with this package's code. `--dataset` measures the agreement
record on that dataset's validation split (`--split`) and saves it in the config: how often each low-precision
arithmetic the pipeline can serve gives fp32's label, which `backend="auto"` reads (a model saved before the record
existed is otherwise served by its fallback: see `backends_m2sa`). `--backend` pins `inference_backend` in the config;
by default the model keeps its own. For "int8" and "bf16" the linear layers are converted when the pipeline first runs
(a fraction of a second), not stored converted: the saved weights stay loadable by every transformers version and every
device.
"""

import argparse
from pathlib import Path

from .backend_agreement import measure_agreement
from .backends_m2sa import BACKENDS, CONFIG_AGREEMENT_KEY, CONFIG_BACKEND_KEY, check_backend
from .modeling_m2sa import M2SAForSequenceClassification
from .processing_m2sa import M2SAProcessor

AGREEMENT_BATCH_SIZE = 32


def validation_batches(processor, dataset, config_name="all", split="validation", batch_size=AGREEMENT_BATCH_SIZE):
    """Model inputs of the tweets (`text`, and `image` where the dataset has it) of a dataset's split, as batches; an
    image that cannot be used is left out of its tweet (as the scorer does)."""
    try:
        import datasets
    except ImportError:
        raise SystemExit('Measuring the agreement record reads a dataset with the datasets library: '
                         'pip install "datasets>=4" (or the m2sa[data] extra).') from None
    rows = datasets.load_dataset(str(dataset), config_name, split=split)
    images = rows["image"] if "image" in rows.column_names else [None] * len(rows)
    texts = rows["text"]
    return [processor.encode_tweets(texts[start : start + batch_size], images[start : start + batch_size],
                                    on_invalid_image="text_only").inputs
            for start in range(0, len(rows), batch_size)]


def export(model_name_or_path, out_dir, backend=None, dataset=None, dataset_config="all", split="validation"):
    """Save the classifier at `model_name_or_path` and its processor to `out_dir` with this package's code; with
    `dataset`, its agreement record measured on that split; with `backend`, set to serve it.

    They are loaded with this package's classes, so the output carries this package's code (which knows the
    backends and the record) whatever code the input was saved with."""
    model = M2SAForSequenceClassification.from_pretrained(model_name_or_path).eval()
    processor = M2SAProcessor.from_pretrained(model_name_or_path)
    if backend is not None:
        setattr(model.config, CONFIG_BACKEND_KEY, check_backend(backend))
    if dataset is not None:
        record = measure_agreement(model, validation_batches(processor, dataset, dataset_config, split), split)
        setattr(model.config, CONFIG_AGREEMENT_KEY, record)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved M2SA classifier: a directory or a Hub id")
    parser.add_argument("--out", required=True, type=Path, help="directory to write the exported model to")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="backend the exported model serves (default: the model's own, 'auto' if it has none)")
    parser.add_argument("--dataset", help="a dataset (directory or Hub id) with a `text` column (and `image`) whose "
                                          "held-out split measures the agreement record")
    parser.add_argument("--dataset-config", default="all", help="the dataset's config (default: all)")
    parser.add_argument("--split", default="validation", help="the held-out split to measure on (default: validation)")
    args = parser.parse_args(argv)
    out_dir = export(args.model, args.out, args.backend, args.dataset, args.dataset_config, args.split)
    config = M2SAForSequenceClassification.config_class.from_pretrained(out_dir)
    record = getattr(config, CONFIG_AGREEMENT_KEY, None)
    print(f"Exported {args.model} to {out_dir} (backend {getattr(config, CONFIG_BACKEND_KEY)}); "
          + (f"agreement with fp32 on {record['tweets']:,} {record['split']} tweets: "
             + ", ".join(f"{name} {share:.1%}" for name, share in record["agreement"].items())
             if record else "no agreement record (pass --dataset to measure one)")
          + f". Serve it with pipeline(model={str(out_dir)!r}, trust_remote_code=True) or python space/app.py "
            f"--model {out_dir}")


if __name__ == "__main__":
    main()
