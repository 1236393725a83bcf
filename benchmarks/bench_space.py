"""The Space under load: the app launched as its own process (loopback only), 16 clients at once, each sending
`--requests-per-client` tweets with a real image, with the Space's own queue settings.

    python -m benchmarks.bench_space [--model DIR] [--clients 16] [--requests-per-client 10]

Model: `--model`, else outputs/m2sa-demo when `python train.py` has written it, else a tiny XLM-R + CLIP model built
here from configs (no downloads). Tweets are real UMSAB texts, images real MVSA photos (from the data root).
Records the p50 / p95 latency of the answered requests, how many were answered and how many refused with gradio's
"Queue is full" (any other error is counted apart), and the server's peak resident memory over its idle size
(Linux /proc), in benchmarks/results/space.json, and prints a Markdown table.
"""

import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gradio_client import Client, handle_file
from gradio_client.utils import QueueError

from benchmarks.harness import (
    REPO_ROOT,
    benchmark_parser,
    free_port,
    memory_mb,
    require_data,
    space_app,
    write_results,
)
from benchmarks.models import DEMO_MODEL
from benchmarks.tweets import load_tweets


def save_tiny_model(directory, texts):
    from m2sa_training.training.tiny_towers import save_tiny_text_tower, save_tiny_vision_tower
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    text_tower = save_tiny_text_tower(Path(directory) / "text", texts, kind="xlm-roberta", vocab_size=1000)
    vision_tower = save_tiny_vision_tower(Path(directory) / "vision", kind="clip")
    model = M2SAForSequenceClassification.from_towers(str(text_tower), str(vision_tower))
    processor = M2SAProcessor.from_towers(str(text_tower), str(vision_tower))
    model.save_pretrained(Path(directory) / "model")
    processor.save_pretrained(Path(directory) / "model")
    return Path(directory) / "model"


def start_server(model_dir, work_dir):
    """`python space/app.py --model DIR` on a free loopback port; returns (process, url) once it answers."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HOME": str(Path(work_dir) / "hf-home")}
    with open(Path(work_dir) / "server.log", "w") as log:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "space" / "app.py"), "--model", str(model_dir)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    while True:
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            sys.exit(f"The Space did not start:\n{(Path(work_dir) / 'server.log').read_text()[-3000:]}")
        try:
            Client(url, verbose=False)
            return process, url
        except Exception:  # noqa: BLE001  (not listening yet)
            time.sleep(1)


def run_client(url, tweets, start, outcome):
    """Send the tweets one after the other once `start` is set; append (latency s, "answered" / "refused" / error)."""
    client = Client(url, verbose=False)
    start.wait()
    for text, image in tweets:
        began = time.perf_counter()
        try:
            label, *_ = client.predict(text, handle_file(str(image)), api_name="/classify")
            result = "answered" if label.get("label") else f"no label: {label}"
        except QueueError:
            result = "refused"
        except Exception as error:  # noqa: BLE001  (counted and reported, not raised)
            result = f"error: {error}"
        outcome.append((time.perf_counter() - began, result))


def percentile(sorted_values, fraction):
    """Nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]


def main():
    parser = benchmark_parser(__doc__, out="space.json", data_root=True)
    parser.add_argument("--model", type=Path, default=None,
                        help="saved M2SA model directory (default: outputs/m2sa-demo if present, else a tiny one)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests-per-client", type=int, default=10)
    args = parser.parse_args()
    require_data(args.data_root, "umsab", "mvsa_sample")
    settings = space_app()  # the Space's queue: how many requests at a time, how many waiting
    tweets = list(zip(*load_tweets(args.data_root, args.clients * args.requests_per_client, image_every=1)))

    with tempfile.TemporaryDirectory(prefix="bench-space-") as work_dir:
        model_dir = args.model or (DEMO_MODEL if DEMO_MODEL.is_dir() else None)
        model_name = str(model_dir) if model_dir else "tiny XLM-R + CLIP (built from configs)"
        model_dir = model_dir or save_tiny_model(work_dir, [text for text, _ in tweets] * 4)
        process, url = start_server(model_dir, work_dir)
        try:
            outcome, wall_seconds, idle_mb, peak_mb = load_test(url, process.pid, tweets, args.clients)
        finally:
            process.terminate()
            process.wait(timeout=60)

    latencies = sorted(seconds for seconds, result in outcome if result == "answered")
    errors = sorted({result for _, result in outcome if result not in ("answered", "refused")})
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "model": model_name,
        "clients": args.clients,
        "requests_per_client": args.requests_per_client,
        "request": "one tweet with a photo (api /classify: text alone, image alone, both)",
        "concurrency_limit": settings.CONCURRENCY_LIMIT,
        "queue_size": settings.QUEUE_SIZE,
        "answered": len(latencies),
        "refused_queue_full": sum(result == "refused" for _, result in outcome),
        "errors": len(outcome) - len(latencies) - sum(result == "refused" for _, result in outcome),
        "error_messages": errors[:10],
        "latency_p50_s": percentile(latencies, 0.50) if latencies else None,
        "latency_p95_s": percentile(latencies, 0.95) if latencies else None,
        "requests_per_second": len(latencies) / wall_seconds,
        "idle_rss_mb": round(idle_mb),
        "peak_rss_over_idle_mb": round(peak_mb - idle_mb),
    }
    write_results(args.out, report)
    print_report(report, errors)


def load_test(url, pid, tweets, clients):
    """`clients` clients sending their share of `tweets` at once, after a warm-up: ([(latency s, outcome)], wall
    seconds, the server's resident memory before (MB), its peak during)."""
    warm_up = Client(url, verbose=False)
    for text, image in tweets[:4]:
        warm_up.predict(text, handle_file(str(image)), api_name="/classify")
    idle_mb = memory_mb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak is measured from here
    start, outcome = threading.Event(), []
    threads = [threading.Thread(target=run_client, args=(url, tweets[i::clients], start, outcome))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(2)  # every client connected before the first request
    began = time.perf_counter()
    start.set()
    for thread in threads:
        thread.join()
    return outcome, time.perf_counter() - began, idle_mb, memory_mb(pid, "VmHWM")


def print_report(report, errors):
    print(f"Machine: {report['machine']}; model: {report['model']}; {report['clients']} clients x "
          f"{report['requests_per_client']} requests; queue: {report['concurrency_limit']} at a time, "
          f"{report['queue_size']} waiting at most\n")
    print("| answered | refused (queue full) | errors | p50 latency | p95 latency | requests/s | peak RSS over idle |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    p50, p95 = (f"{seconds:.2f} s" if seconds is not None else "-"
                for seconds in (report["latency_p50_s"], report["latency_p95_s"]))
    print(f"| {report['answered']} | {report['refused_queue_full']} | {report['errors']} | {p50} | {p95} | "
          f"{report['requests_per_second']:.1f} | {report['peak_rss_over_idle_mb']} MB "
          f"(idle {report['idle_rss_mb']} MB) |")
    for message in errors:
        print(f"error: {message}")


if __name__ == "__main__":
    main()
