"""Build throughput and peak memory: MVSA sample (with images) and UMSAB (text), at 1x, 2x, 4x and 8x the rows.

Each size is built in a fresh Python process (so peaks do not carry over), twice: once timed, reporting rows/s
and peak RSS, and once under tracemalloc for the peak of Python allocations during the build. Inputs are
repeated with new tweet ids (`<id>-copy<k>`), so every copy is a distinct row. Memory should stay flat for
images (bytes are read one row group at a time) and grow only by the per-row id and text for text.

    python -m benchmarks.bench_build                # writes benchmarks/results/bench_build.json, prints a table
    python -m benchmarks.bench_build --sizes 1 2
"""

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks.harness import benchmark_parser, require_data, resident_bytes, run_again, write_results

INPUTS = {"mvsa (images)": "mvsa_sample", "umsab (text)": "umsab"}


def _repeated_source(data_root: Path, input_name: str, times: int):
    from dataset_script.mvsa import mvsa_source
    from dataset_script.schema import Source
    from dataset_script.umsab import umsab_source

    make_source = mvsa_source if INPUTS[input_name] == "mvsa_sample" else umsab_source
    path = data_root / INPUTS[input_name]
    records = (
        dataclasses.replace(record, tweet_id=f"{record.tweet_id}-copy{copy}")
        for copy in range(times)
        for record in make_source(path).records
    )
    return Source(make_source(path).info, records)


def measure_once(data_root: Path, input_name: str, times: int, traced: bool) -> dict:
    """Build one size in this process; called in a child process by `main`."""
    from dataset_script.builder import build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        rss_before = resident_bytes()
        if traced:
            tracemalloc.start()
        start = time.perf_counter()
        report = build_dataset(Path(tmp) / "out", [_repeated_source(data_root, input_name, times)],
                               show_progress=False)
        seconds = time.perf_counter() - start
        result = {"rows": report.rows_out, "seconds": seconds, "rss_before_mib": rss_before / 2**20}
        if traced:
            result["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        result["output_mib"] = sum(p.stat().st_size for p in (Path(tmp) / "out").rglob("*") if p.is_file()) / 2**20
    return result


def _child(data_root: Path, input_name: str, times: int, traced: bool) -> dict:
    arguments = ["--child", input_name, str(times), "--data-root", str(data_root)] + (["--traced"] if traced else [])
    output = run_again(arguments, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = benchmark_parser(__doc__, out="bench_build.json", data_root=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8], help="input repetitions (default 1 2 4 8)")
    parser.add_argument("--child", nargs=2, metavar=("INPUT", "TIMES"), help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_once(args.data_root, args.child[0], int(args.child[1]), args.traced)))
        return

    require_data(args.data_root, *INPUTS.values())
    results = []
    for input_name in INPUTS:
        for times in args.sizes:
            timed = _child(args.data_root, input_name, times, traced=False)
            traced = _child(args.data_root, input_name, times, traced=True)
            results.append(
                {
                    "input": input_name,
                    "times": times,
                    "rows": timed["rows"],
                    "rows_per_s": timed["rows"] / timed["seconds"],
                    "seconds": timed["seconds"],
                    "peak_rss_mib": timed["peak_rss_mib"],
                    "rss_growth_mib": timed["peak_rss_mib"] - timed["rss_before_mib"],
                    "tracemalloc_peak_mib": traced["tracemalloc_peak_mib"],
                    "output_mib": timed["output_mib"],
                }
            )
            print(f"{input_name} x{times}: {results[-1]['rows_per_s']:.0f} rows/s", file=sys.stderr)
    from dataset_script.writer import IMAGE_CHECK_THREADS

    summary = {"python": sys.version.split()[0], "image_check_threads": IMAGE_CHECK_THREADS, "results": results}
    write_results(args.out, summary)
    print_table(results)
    print(f"\nImages checked on {IMAGE_CHECK_THREADS} threads. Results: {args.out}")


def print_table(results):
    print("| input | rows | rows/s | peak RSS (MiB) | RSS growth during build (MiB) | tracemalloc peak (MiB) | "
          "output (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['input']} x{r['times']} | {r['rows']} | {r['rows_per_s']:.0f} | {r['peak_rss_mib']:.0f} | "
            f"{r['rss_growth_mib']:.0f} | {r['tracemalloc_peak_mib']:.1f} | {r['output_mib']:.1f} |"
        )


if __name__ == "__main__":
    main()
