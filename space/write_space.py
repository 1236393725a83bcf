"""Write a folder ready to upload as a Hugging Face Space that serves one M2SA model.

    python space/write_space.py ORG/MODEL_NAME OUT_DIR
    hf upload ORG/SPACE_NAME OUT_DIR . --type space

The folder holds the Space's files (`app.py`, `batch_files.py`, `requirements.txt`, `README.md`), with the README's
`models:` set to the model's Hub id (the Space serves it and the Hub links the two) and its `python_version` and
requirements as the Space was tested. Nothing else needs editing by hand.
"""

import argparse
import shutil
import sys
from pathlib import Path

from huggingface_hub import SpaceCard

SPACE_DIR = Path(__file__).resolve().parent
SPACE_FILES = ("app.py", "batch_files.py", "requirements.txt")
MODEL_ID_HINT = "a Hub model id, ORG/NAME (the repo `python train.py --push-to-hub ORG/NAME` uploaded)"


def write_space(model_id, out_dir):
    """Copy the Space's files into `out_dir` with its card's `models:` set to `model_id`; returns `out_dir`."""
    owner, _, name = model_id.partition("/")
    if not owner or not name or "/" in name or Path(model_id).exists():
        raise SystemExit(f"{model_id!r} is not {MODEL_ID_HINT}. A Space loads its model from the Hub; to try a local "
                         f"folder, run python space/app.py --model {model_id}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for file_name in SPACE_FILES:
        shutil.copyfile(SPACE_DIR / file_name, out_dir / file_name)
    card = SpaceCard.load(SPACE_DIR / "README.md")
    card.data.models = [model_id]
    card.save(out_dir / "README.md")
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_id", help=MODEL_ID_HINT)
    parser.add_argument("out_dir", type=Path, help="folder to write the Space into")
    args = parser.parse_args(argv)
    out_dir = write_space(args.model_id, args.out_dir)
    print(f"Space for {args.model_id} written to {out_dir}; upload it with:\n"
          f"    hf upload ORG/SPACE_NAME {out_dir} . --type space")


if __name__ == "__main__":
    sys.exit(main())
