"""What CPU a benchmark ran on: its model name and the instruction-set flags that decide which arithmetic is fast
(AVX2 / AVX512 vectors, VNNI int8 dot products, AVX512-BF16, AMX tiles). Recorded with every CPU benchmark's results,
since the same code is several times faster on one kind than another."""

import platform
from pathlib import Path

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_description():
    """The CPU's model name and which of `ISA_FLAGS` it has (from /proc/cpuinfo; no flags where it cannot be read)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": []}
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = set(fields.get("flags\t\t", fields.get("flags", "")).split())
    model = next((value.strip() for key, value in fields.items() if key.strip() == "model name"), platform.machine())
    return {"model": model, "flags": [flag for flag in ISA_FLAGS if flag in flags]}
