"""Labelling a corpus with `python -m m2sa_training.score`: its throughput against the pipeline called in a loop over
the same rows, its peak memory at two corpus sizes, 1 against 2 processes, and kills at random instants.

Corpus (synthetic, `--rows`, default 50,000): real UMSAB texts in 8 languages (from the data root; made-up texts when
absent), cycled; 20 % of the rows have an image: 10 % a local JPEG, 8 % an http URL served by a loopback HTTP server,
2 % broken (HTTP 404, a page that is not an image, a missing file). Images are 640 x 360 JPEGs drawn from a pool of 64.
Model: `outputs/m2sa-demo` (tiny towers, trained by `python train.py` on first use), so the forward pass is cheap and
the command's own work (reading, fetching, checking, writing) weighs as much as it ever will.

1. Throughput, on the first `--throughput-rows` rows, in turns over `--rounds` rounds: the pipeline called in a loop
   (chunks of 256 tweets, images already resolved to bytes or paths, broken ones as no image: the pipeline's own
   work only) against the command (everything: reading, fetching URLs, writing shards). The command's rate comes
   from its report: over its scoring loop (`ratio`), and over the whole run with model loading and dataset
   preparation (`ratio_with_setup`; the loop's rate excludes the pipeline's loading too).
2. Peak RSS of the command at `--throughput-rows` rows and at all `--rows` rows (one process each).
3. The same `--throughput-rows` rows with 2 processes (`accelerate launch --multi_gpu --num_processes 2`, the CPU
   flag set), against 1.
4. Three kills (SIGKILL at instants drawn uniformly over the uninterrupted run's duration), each followed by a rerun:
   the output's bytes against the uninterrupted run's, and the time lost (killed run + rerun - uninterrupted run;
   `lost_work_s` less the rerun's start-up, timed as a rerun with nothing left to do) against one shard's time.

    python -m benchmarks.bench_score [--rows 50000] [--throughput-rows 10000] [--rounds 2] [--shard-size 1000]
"""

import argparse
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.cpu_info import cpu_description
from benchmarks.harness import REPO_ROOT, benchmark_parser, peak_rss_command, peak_rss_mib, write_results
from benchmarks.models import DEMO_MODEL
from dataset_script.umsab import read_lines, umsab_split_files

POOL_SIZE = 64
CHUNK = 256


def tweet_texts(data_root):
    folders = sorted(path for path in (data_root / "umsab").glob("*") if path.is_dir())
    files = [texts_file for texts_file, _ in (umsab_split_files(folder, "train") for folder in folders)]
    texts = [(path.parent.name, line) for path in files if path.is_file() for line in read_lines(path)]
    if texts:
        return texts
    words = "good bad day rain sun love hate train city news match".split()
    generator = random.Random(0)
    return [("und", " ".join(generator.choices(words, k=12))) for _ in range(5000)]


def image_pool(directory):
    from PIL import Image

    generator = random.Random(0)
    pool = []
    for index in range(POOL_SIZE):
        image = Image.effect_noise((640, 360), 40).convert("RGB")
        image.paste(tuple(generator.randrange(256) for _ in range(3)), (0, 0, 320, 180))
        path = directory / f"pool-{index:02d}.jpg"
        image.save(path, quality=85)
        pool.append(path)
    return pool


def serve(directory):
    """A loopback HTTP server of `directory` (its files under /images/...); /broken/* answers 404."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # socketserver's default of 5 drops concurrent connections (a 1 s SYN retry each)

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def build_corpus(directory, rows, base_url, data_root):
    """The corpus as Parquet (`corpus.parquet`) and, for the pipeline loop, each row's resolved image."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images_dir = directory / "images"
    images_dir.mkdir()
    pool = image_pool(images_dir)
    (images_dir / "page.html").write_text("<html>not an image</html>")
    texts = tweet_texts(data_root)
    generator = random.Random(1)
    columns = {"tweet_id": [], "language": [], "text": [], "image": []}
    resolved = []
    for index in range(rows):
        language, text = texts[index % len(texts)]
        draw, picture = generator.random(), pool[generator.randrange(POOL_SIZE)]
        if draw < 0.10:
            image, ready = f"images/{picture.name}", str(picture)
        elif draw < 0.18:
            image, ready = f"{base_url}/images/{picture.name}", picture.read_bytes()
        elif draw < 0.20:
            image, ready = generator.choice([f"{base_url}/broken/{index}.jpg", f"{base_url}/images/page.html",
                                             f"images/missing-{index}.jpg"]), None
        else:
            image, ready = "", None
        for name, value in (("tweet_id", str(index)), ("language", language), ("text", text), ("image", image)):
            columns[name].append(value)
        resolved.append({"text": text, "image": ready})
    pq.write_table(pa.table(columns), directory / "corpus.parquet")
    pq.write_table(pa.table({name: values[:0] for name, values in columns.items()}), directory / "empty.parquet")
    return directory / "corpus.parquet", resolved


def first_rows(corpus, rows, directory):
    import pyarrow.parquet as pq

    path = directory / f"corpus-{rows}.parquet"
    pq.write_table(pq.read_table(corpus).slice(0, rows), path)
    return path


def score_command(corpus, output_dir, shard_size, processes=1):
    flags = ["--model", str(DEMO_MODEL), "--dataset", str(corpus), "--output-dir", str(output_dir),
             "--shard-size", str(shard_size)]
    if processes == 1:
        return peak_rss_command("m2sa_training.score", flags), dict(os.environ)
    return ([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
             "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "m2sa_training.score",
             *flags], {**os.environ, "ACCELERATE_USE_CPU": "true"})


def run_score(corpus, output_dir, shard_size, processes=1):
    """(report, seconds, peak RSS in MB or None) of one complete command run."""
    command, environment = score_command(corpus, output_dir, shard_size, processes)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads((Path(output_dir) / "scoring_report.json").read_text()), seconds, peak_rss_mib(result.stderr)


def pipeline_loop_rate(resolved):
    """Rows/s of the model's pipeline called in a loop of CHUNK tweets (images resolved beforehand)."""
    from transformers import pipeline

    pipe = pipeline(model=str(DEMO_MODEL), trust_remote_code=True)
    pipe(resolved[:CHUNK], top_k=None, on_invalid_image="text_only")  # warm-up
    started = time.perf_counter()
    for first in range(0, len(resolved), CHUNK):
        pipe(resolved[first:first + CHUNK], top_k=None, on_invalid_image="text_only", batch_size=32)
    return len(resolved) / (time.perf_counter() - started)


def shard_bytes(output_dir):
    return {path.name: path.read_bytes() for path in sorted((Path(output_dir) / "data").glob("*.parquet"))}


def kill_and_rerun(corpus, output_dir, shard_size, kill_after):
    """Start the command, SIGKILL it after `kill_after` s, rerun it; (shards done at the kill, seconds until the
    kill, rerun seconds)."""
    command, environment = score_command(corpus, output_dir, shard_size)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(kill_after)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = time.perf_counter() - started
    done = len(shard_bytes(output_dir))
    _, rerun_seconds, _ = run_score(corpus, output_dir, shard_size)
    return done, killed_at, rerun_seconds


def main(argv=None):
    args = arguments(argv)
    if not DEMO_MODEL.is_dir():
        subprocess.run([sys.executable, "train.py"], cwd=REPO_ROOT, check=True)
    work = Path(tempfile.mkdtemp(prefix="m2sa-bench-score-"))
    server = None
    try:
        (work / "corpus").mkdir()
        server, base_url = serve(work / "corpus")
        corpus, resolved = build_corpus(work / "corpus", args.rows, base_url, args.data_root)
        small = first_rows(corpus, args.throughput_rows, work / "corpus")
        results = {"conditions": {"cpu": cpu_description(), "cores": os.cpu_count(), "rows": args.rows,
                                  "throughput_rows": args.throughput_rows, "shard_size": args.shard_size,
                                  "model": "outputs/m2sa-demo (tiny towers)",
                                  "images": "20 % of rows: 10 % local JPEG, 8 % loopback URL, 2 % broken; 640 x 360"}}

        rounds, image_errors = throughput_rounds(small, resolved[:args.throughput_rows], work / "small", args)
        reference = shard_bytes(work / "small")
        _, startup_seconds, _ = run_score(small, work / "small", args.shard_size)  # all done: start-up and summary
        one_process_seconds = min(entry["command_wall_s_with_startup"] for entry in rounds)
        results["throughput"] = {"rounds": rounds, "best_ratio": max(entry["ratio"] for entry in rounds),
                                 "image_errors": image_errors}
        results["memory"] = peak_memory(corpus, work / "full", rounds, args)
        print(f"memory: {results['memory']}", flush=True)
        results["processes"] = two_processes(small, work / "two", one_process_seconds, reference, args.shard_size)
        print(f"processes: {results['processes']}", flush=True)
        results["kills"] = kills(small, work / "killed", one_process_seconds, startup_seconds, reference, args)
        write_results(args.out, results)
        print(json.dumps(results, indent=2))
    finally:
        if server is not None:
            server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def arguments(argv):
    parser = benchmark_parser(__doc__, out="score.json", data_root=True)
    parser.add_argument("--output", dest="out", type=Path, help=argparse.SUPPRESS)  # the former name of --out
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--throughput-rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=3)
    return parser.parse_args(argv)


def throughput_rounds(small, resolved, output_dir, args):
    """The pipeline loop and the command on the same rows, in turns, `--rounds` times: ([per round: rates, ratio,
    setup seconds, wall seconds, peak RSS], the command's image errors)."""
    rounds = []
    for round_index in range(args.rounds):
        loop = pipeline_loop_rate(resolved)
        shutil.rmtree(output_dir, ignore_errors=True)
        report, seconds, peak = run_score(small, output_dir, args.shard_size)
        run = report["this_run"]
        rounds.append({"pipeline_loop_rows_per_s": round(loop, 1),
                       "command_rows_per_s": run["scoring_rows_per_second"],
                       "command_rows_per_s_with_setup": run["rows_per_second"],
                       "command_setup_s": run["setup_seconds"],
                       "command_wall_s_with_startup": round(seconds, 1), "peak_rss_mb": round(peak),
                       "ratio": round(run["scoring_rows_per_second"] / loop, 3),
                       "ratio_with_setup": round(run["rows_per_second"] / loop, 3)})
        print(f"round {round_index + 1}: {rounds[-1]}", flush=True)
    return rounds, report["summary"]["image_errors"]


def peak_memory(corpus, output_dir, rounds, args):
    """The command's peak RSS on the throughput rows (its best round) and on the whole corpus."""
    shutil.rmtree(output_dir, ignore_errors=True)
    report, _, peak = run_score(corpus, output_dir, args.shard_size)
    shutil.rmtree(output_dir, ignore_errors=True)
    return {f"peak_rss_mb_{args.throughput_rows}_rows": min(entry["peak_rss_mb"] for entry in rounds),
            f"peak_rss_mb_{args.rows}_rows": round(peak),
            f"rows_per_s_{args.rows}_rows": report["this_run"]["rows_per_second"]}


def two_processes(small, output_dir, one_process_seconds, reference, shard_size):
    """The throughput rows labelled by 2 processes against 1: wall time, rate, and the same output bytes."""
    shutil.rmtree(output_dir, ignore_errors=True)
    report, seconds, _ = run_score(small, output_dir, shard_size, processes=2)
    return {"one_process_wall_s": one_process_seconds, "two_processes_wall_s": round(seconds, 1),
            "two_processes_rows_per_s": report["this_run"]["rows_per_second"],
            "speed_up": round(one_process_seconds / seconds, 2),
            "same_bytes_as_one_process": shard_bytes(output_dir) == reference}


def kills(small, output_dir, one_process_seconds, startup_seconds, reference, args):
    """`--kills` runs killed at random instants and rerun: the time lost against one shard's, and the output's bytes
    against the uninterrupted run's."""
    generator = random.Random(2)
    shard_seconds = one_process_seconds / -(-args.throughput_rows // args.shard_size)
    runs = []
    for _ in range(args.kills):
        shutil.rmtree(output_dir, ignore_errors=True)
        kill_after = generator.uniform(0.05, 0.95) * one_process_seconds
        done, killed_at, rerun_seconds = kill_and_rerun(small, output_dir, args.shard_size, kill_after)
        runs.append({"killed_after_s": round(killed_at, 1), "shards_done_at_kill": done,
                     "rerun_s": round(rerun_seconds, 1),
                     "lost_s": round(killed_at + rerun_seconds - one_process_seconds, 1),
                     "lost_work_s": round(killed_at + rerun_seconds - one_process_seconds - startup_seconds, 1),
                     "same_bytes": shard_bytes(output_dir) == reference})
        print(f"kill: {runs[-1]}", flush=True)
    return {"runs": runs, "one_shard_s": round(shard_seconds, 1), "start_up_s": round(startup_seconds, 1),
            "all_same_bytes": all(kill["same_bytes"] for kill in runs)}


if __name__ == "__main__":
    main()
