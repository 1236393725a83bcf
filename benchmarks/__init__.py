"""The benchmarks: each `bench_*` module is one experiment, run from the repository root as
`python -m benchmarks.<name> [options]` (`--help` lists them), writing its results to `benchmarks/results/` and, for
some, its figure to `docs/figures/`. They need the `bench` extra and, most of them, the real data (`--data-root`).

What they share: `harness` (common options, results files without machine paths, timing in rounds, processes and
their memory), `cpu_info` (the CPU a run measured, and emulating a lesser one), `figures` (the docs' figures),
`recipes` (datasets and training setups), `tweets` (real tweets for inference), `models` (the models measured).
`uncertainty` and `space_figure` are runnable like the benchmarks.
"""

from m2sa_training.quiet_start import drop_known_library_noise

drop_known_library_noise()  # before a benchmark imports transformers' quantizers (and so torchao)
