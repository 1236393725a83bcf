"""Export a saved M2SA classifier for serving with a chosen inference backend.

    python -m modeling_m2sa.export --model DIR_OR_HUB_ID --out DIR [--backend int8|bf16|fp32|auto]

The output is the same model (fp32 weights, its processor and code) with `inference_backend` set in its
`config.json`; `pipeline(model=OUT, trust_remote_code=True)`, `predict` and the Space then run that backend without
being told (models saved without one run "auto"). For "int8" and "bf16" the linear layers are converted when the
pipeline first runs (a fraction of a second), not stored converted: the saved weights stay loadable by every
transformers version and every device.
"""

import argparse
from pathlib import Path

from .backends_m2sa import BACKENDS, CONFIG_BACKEND_KEY, check_backend
from .modeling_m2sa import M2SAForSequenceClassification
from .processing_m2sa import M2SAProcessor


def export(model_name_or_path, out_dir, backend="int8"):
    """Save the classifier at `model_name_or_path` and its processor to `out_dir`, set to run `backend`.

    They are loaded with this package's classes, so the output carries this package's code (which knows the
    backends) whatever code the input was saved with."""
    check_backend(backend)
    model = M2SAForSequenceClassification.from_pretrained(model_name_or_path)
    processor = M2SAProcessor.from_pretrained(model_name_or_path)
    setattr(model.config, CONFIG_BACKEND_KEY, backend)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved M2SA classifier: a directory or a Hub id")
    parser.add_argument("--out", required=True, type=Path, help="directory to write the exported model to")
    parser.add_argument("--backend", default="int8", choices=BACKENDS, help="backend the exported model runs")
    args = parser.parse_args(argv)
    out_dir = export(args.model, args.out, args.backend)
    print(f"Exported {args.model} to {out_dir} (backend {args.backend}); serve it with "
          f"pipeline(model={str(out_dir)!r}, trust_remote_code=True) or python space/app.py --model {out_dir}")


if __name__ == "__main__":
    main()
