# The performance benchmark (included by the top-level Makefile, which defines PY and STAMP).
# Small sizes on a CPU, the full ones (ResNet-18 and WRN-28-10 at batch 128) on a GPU;
# pass options with BENCH_ARGS, e.g. `make bench BENCH_ARGS=--full`.
# `make gpu-check` (GPU_CHECK_ARGS, e.g. `--only twins` or `--dry-run`) checks the CUDA fast
# path on a GPU; without one it says so and exits 0. docs/performance.md lists its checks.

.PHONY: gpu-check

BENCH_ARGS ?=

bench: $(STAMP)  ## time SGD/SAM/VaSSO steps, the data pipeline and an epoch; JSON in outputs/perf/
	$(PY) -m benchmarks.perf $(BENCH_ARGS)

GPU_CHECK_ARGS ?=

gpu-check: $(STAMP)  ## on a CUDA GPU: the fast path's checks, PASS/FAIL per line (~6 min); JSON + Markdown in outputs/perf/
	$(PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)
