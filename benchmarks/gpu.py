"""DiMSUM vs DiT on one GPU (the same as `dimsum bench`); see dimsum_core/gpu_benchmark.py.

    python benchmarks/gpu.py [--models dimsum-L/2 dit-L/2] [--out benchmarks/results/gpu.json]
"""

from dimsum_core.cli.bench import bench

if __name__ == "__main__":
    bench(prog_name="benchmarks/gpu.py")
