"""Command line: build the M2SA Hub dataset directory (and optionally push it to the Hub).

    python dataset_script/build.py --out DIR --manifest final_dataset.zip --dump DUMP_DIR
    python dataset_script/build.py --out DIR --umsab ../shared/data/umsab --mvsa ../shared/data/mvsa_sample
    python dataset_script/build.py --out DIR --demo
    python dataset_script/build.py --out DIR --push-to-hub org/m2sa      # push an already built DIR

Then `load_dataset(DIR, "de")` (or `load_dataset("org/m2sa", "de")` once pushed).
"""

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python dataset_script/build.py`: make `dataset_script` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_script.builder import build_dataset  # noqa: E402
from dataset_script.demo import build_demo_dataset  # noqa: E402
from dataset_script.dump import DUMP_FORMAT  # noqa: E402
from dataset_script.manifest import manifest_source  # noqa: E402
from dataset_script.mvsa import mvsa_source  # noqa: E402
from dataset_script.push import push_to_hub  # noqa: E402
from dataset_script.report import read_report  # noqa: E402
from dataset_script.umsab import umsab_source  # noqa: E402
from dataset_script.writer import DEFAULT_MAX_SHARD_BYTES  # noqa: E402
from m2sa_files.disk_full import exiting_on_a_full_disk  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Command line: build the M2SA Hub dataset directory (and optionally push it to the Hub).",
        epilog="Dump format (--dump):\n" + DUMP_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory (created; a previous build there is replaced)")
    parser.add_argument("--manifest", type=Path, metavar="ZIP", help="official M2SA release manifest (final_dataset.zip); needs --dump")
    parser.add_argument("--dump", type=Path, metavar="DIR", help="local tweet dump with the texts and images of the manifest's tweet ids (format below)")
    parser.add_argument("--umsab", type=Path, metavar="DIR", help="UMSAB/TweetEval folder (<language>/{train,val}_{text,labels}.txt) -> text-only configs umsab_<lang>")
    parser.add_argument("--mvsa", type=Path, metavar="DIR", help="MVSA folder (labels.csv, data/<guid>.txt|jpg) -> config mvsa_en")
    parser.add_argument("--demo", action="store_true", help="build the synthetic demo set instead of real inputs")
    parser.add_argument("--demo-train", type=int, default=2400, metavar="N", help="demo: train rows (default 2400)")
    parser.add_argument("--demo-eval", type=int, default=300, metavar="N", help="demo: validation rows and test rows each (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="demo: generator seed (default 0); real data splits never use a seed")
    parser.add_argument("--max-shard-mb", type=int, default=DEFAULT_MAX_SHARD_BYTES // 2**20, metavar="MB", help="start a new Parquet shard past this size (default %(default)s)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="after building (or, with no input flag, for an existing --out), upload --out to this Hub dataset repo")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo as private")
    parser.add_argument("--token", help="with --push-to-hub: Hub token (default: the one saved by `hf auth login` or HF_TOKEN)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)

    if (args.manifest is None) != (args.dump is None):
        parser.error("--manifest and --dump go together: the manifest lists tweet ids, the dump holds their texts and images.")
    has_real_input = any(path is not None for path in (args.manifest, args.umsab, args.mvsa))
    if args.demo and has_real_input:
        parser.error("--demo builds the synthetic set alone; build real inputs into another --out.")
    if not (args.demo or has_real_input or args.push_to_hub):
        parser.error("nothing to do: give --demo, --manifest/--dump, --umsab or --mvsa (or --push-to-hub for a built --out).")
    return args


def _summary(out_dir: Path) -> str:
    report = read_report(out_dir)
    lines = [
        f"Built {out_dir}: {report['rows_in']} rows in, {report['rows_out']} written, {report['rows_dropped']} dropped, "
        f"{report['rows_kept_with_warning']} kept with a warning. Configs: {', '.join(report['configs'])}."
    ]
    lines += [f"  dropped {reason}: {n}" for reason, n in report["dropped_by_reason"].items()]
    lines += [f"  kept with warning {reason}: {n}" for reason, n in report["warnings_by_reason"].items()]
    lines.append(f"Details: {out_dir / 'build_report.json'}; card: {out_dir / 'README.md'}.")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    show_progress = not args.no_progress
    sources = []
    if args.manifest is not None:
        sources.append(manifest_source(args.manifest, args.dump))
    if args.umsab is not None:
        sources.append(umsab_source(args.umsab))
    if args.mvsa is not None:
        sources.append(mvsa_source(args.mvsa))
    kept = f"The half-built copy was removed; {args.out} holds the previous build, if there was one."
    with exiting_on_a_full_disk(kept, "run the same command again", "--out"):
        if args.demo:
            build_demo_dataset(args.out, args.demo_train, args.demo_eval, args.seed, show_progress=show_progress)
        elif sources:
            build_dataset(args.out, sources, max_shard_bytes=args.max_shard_mb * 2**20, show_progress=show_progress)
    if args.demo or sources:
        print(_summary(args.out))
    if args.push_to_hub:
        commit = push_to_hub(args.out, args.push_to_hub, private=args.private, token=args.token)
        print(f"Pushed {args.out} to https://huggingface.co/datasets/{args.push_to_hub} ({commit}).")


if __name__ == "__main__":
    main()
