"""What CPU a benchmark ran on: its model name and the instruction-set flags that decide which arithmetic is fast
(AVX2 / AVX512 vectors, VNNI int8 dot products, AVX512-BF16, AMX tiles). Recorded with every CPU benchmark's results,
since the same code is several times faster on one kind than another."""

import os
import platform
import sys
from pathlib import Path

from benchmarks.harness import run_again

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


CPU_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
            "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}}
"""A lesser CPU kind a benchmark can run as (`--as-cpu`) -> the environment that caps PyTorch's own vectorised kernels,
oneDNN's and MKL's (fp32 matmuls) to it. fbgemm reads the CPU's flags itself: no cap reaches it (`bench_backends`
measures which kernels a cap reached)."""
EMULATED_AS = "M2SA_BENCHMARK_AS_CPU"  # set in the capped process: its results say they were emulated


def rerun_as_cpu(kind, extra_args=()):
    """Run this benchmark again, with the same arguments and `extra_args`, in a process capped to `kind`; return its
    exit code."""
    environment = {**os.environ, **CPU_CAPS[kind], EMULATED_AS: kind}
    return run_again([*sys.argv[1:], *extra_args], env=environment).returncode


def cpu_description():
    """The CPU's model name and which of `ISA_FLAGS` it has (from /proc/cpuinfo; no flags where it cannot be read),
    and the kind it was capped to when the run emulated a lesser CPU (`emulated_as`, None for a real run)."""
    emulated = {"emulated_as": os.environ.get(EMULATED_AS), "caps": CPU_CAPS.get(os.environ.get(EMULATED_AS), {})}
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": [], **emulated}
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = set(fields.get("flags\t\t", fields.get("flags", "")).split())
    model = next((value.strip() for key, value in fields.items() if key.strip() == "model name"), platform.machine())
    return {"model": model, "flags": [flag for flag in ISA_FLAGS if flag in flags], **emulated}
