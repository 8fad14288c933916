"""The CPU quickstart's training step alone and beside a competing process, under several OpenMP settings.

One training step is what ``dimsum run quickstart`` does per step but the EMA update
(:class:`dimsum_core.train.step.TrainStep` with the recipe's model and ``train:`` settings on 128 images of
its data: GVP velocity loss with label dropout, backward, clipping, AdamW). Each setting runs in fresh processes, since OpenMP
reads its environment when torch loads:

- alone: one process on an otherwise idle machine;
- beside a twin: a second process with the same setting runs the same step in a loop (two dimsum runs);
- beside torch default: the competitor keeps PyTorch's defaults (another project's training or tests).

img/s counts steps after a warm-up until ``--seconds`` have passed (at least ``--min-steps``). The
competitor's img/s over the same window is reported too: a fair split of 2 cores gives each about half
of the alone number. On a shared machine other people's work skews everything: each case waits until
other processes use under 0.1 core, measures the CPU time they took during its window (``others_cores``
in the JSON, from /proc; ``steal_cores``: time the hypervisor gave to other machines) and is repeated (up
to ``--retries``) when they took more than 0.15 core. Each case runs ``--repeats`` times; medians are shown.

    python benchmarks/cpu_threads.py                       # table + runs/benchmarks/cpu_threads.json
    python benchmarks/cpu_threads.py --out benchmarks/results/cpu_threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 128
#: name -> environment on top of the caller's (OpenMP's own variables removed first)
SETTINGS: dict[str, dict[str, str]] = {
    "torch default (2 threads, spin then sleep)": {},
    "dimsum default (threads follow free cores)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
    "OMP_NUM_THREADS=1 + PASSIVE": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
}
DEFAULT = "torch default (2 threads, spin then sleep)"
#: settings whose steps call dimsum_core.cpu_threads.make_room, as dimsum's training and sampling loops do
ADAPTIVE = {"dimsum default (threads follow free cores)"}
#: case -> the competitor's setting: none, the same as the measured one (""), or PyTorch's defaults
CASES: dict[str, str | None] = {"alone": None, "beside_twin": "", "beside_torch_default": DEFAULT}
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def worker(seconds: float, warmup: int, min_steps: int, ticks: Path | None, adaptive: bool) -> None:
    """Run quickstart training steps; print a JSON line with the measured window (or loop forever,
    appending one timestamp per step to ``ticks``, as the competitor)."""
    import torch  # first: OpenMP starts with exactly the environment this process was given

    from dimsum_core.config.load import load_recipe
    from dimsum_core.config.nodes import build
    from dimsum_core.cpu_threads import make_room
    from dimsum_core.models import create_model
    from dimsum_core.train.config import TrainConfig, as_config
    from dimsum_core.train.step import TrainStep

    recipe = load_recipe("quickstart").to_dict()
    torch.manual_seed(0)
    model = create_model(recipe["model"])
    data = build("dataset", recipe["data"])
    objective = build("objective", recipe["objective"])
    items = [data[i] for i in range(BATCH)]
    x1, y = torch.stack([x for x, _ in items]), torch.tensor([label for _, label in items])
    train_step = TrainStep(model, objective, as_config(TrainConfig, recipe["train"], "train"),
                           torch.device("cpu"), ema=False)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        if adaptive:
            make_room()
        train_step(x1, y, generator)

    began, done = time.time(), 0  # warm-up: at least ``warmup`` steps and 6 s, so make_room measured once
    while done < warmup or time.time() - began < 6.0:
        step()
        done += 1
    if ticks is not None:
        with ticks.open("a", buffering=1) as f:
            while True:
                step()
                f.write(f"{time.time()}\n")
    done, start = 0, time.time()
    while done < min_steps or time.time() - start < seconds:
        step()
        done += 1
    end = time.time()
    print(json.dumps({"steps": done, "start": start, "end": end, "img_per_s": done * BATCH / (end - start),
                      "threads": torch.get_num_threads()}))


def environment(setting: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES}
    return {**env, **setting}


def command(setting: str, extra: list[str], args: argparse.Namespace) -> list[str]:
    return [sys.executable, __file__, "--worker", "--seconds", str(args.seconds), "--warmup", str(args.warmup),
            "--min-steps", str(args.min_steps), *(["--adaptive"] if setting in ADAPTIVE else []), *extra]


def cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) each running process has used so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        used[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    return used


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other machines while this one wanted them (/proc/stat)."""
    return int(Path("/proc/stat").read_text().split()[8]) / os.sysconf("SC_CLK_TCK")


def others_cores(before: dict[int, float], after: dict[int, float], ours: set[int], seconds: float) -> float:
    """Cores' worth of CPU that processes other than ``ours`` used between two :func:`cpu_seconds`."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items() if pid not in ours) / seconds


def wait_until_quiet(timeout: float) -> float:
    """Wait (up to ``timeout`` s) until other processes use under 0.1 core over 2 s; returns the last reading."""
    waited = time.time()
    while True:
        before = cpu_seconds()
        time.sleep(2.0)
        busy = others_cores(before, cpu_seconds(), {os.getpid()}, 2.0)
        if busy < 0.1 or time.time() - waited > timeout:
            return busy
        time.sleep(3.0)


def measure(setting: str, competitor: str | None, args: argparse.Namespace) -> dict:
    """img/s of one process with ``setting``, alone or beside a competitor with ``competitor``; repeated
    while other processes took more than 0.15 core during the window."""
    for attempt in range(args.retries + 1):
        result = _measure_once(setting, competitor, args)
        result["attempt"] = attempt
        if result["others_cores"] <= 0.15:
            break
    return result


def _measure_once(setting: str, competitor: str | None, args: argparse.Namespace) -> dict:
    rival, ticks = None, None
    quiet = wait_until_quiet(args.quiet_timeout)
    load = os.getloadavg()[0]
    try:
        if competitor is not None:
            ticks = Path(tempfile.mkstemp(prefix="cpu_threads_ticks_")[1])
            rival = subprocess.Popen(command(competitor, ["--ticks", str(ticks)], args),
                                     env=environment(SETTINGS[competitor]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            waited = time.time()
            while not ticks.read_text().strip():  # the competitor is past its warm-up
                if rival.poll() is not None or time.time() - waited > 600:
                    raise RuntimeError("the competing process did not start")
                time.sleep(0.2)
        before, stolen, started = cpu_seconds(), steal_seconds(), time.time()
        worker_process = subprocess.Popen(command(setting, [], args), env=environment(SETTINGS[setting]),
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        out, _ = worker_process.communicate()
        after = cpu_seconds()
        ours = {os.getpid(), worker_process.pid} | ({rival.pid} if rival is not None else set())
        result = json.loads(out.strip().splitlines()[-1])
        result["others_cores"] = others_cores(before, after, ours, time.time() - started)
        result["steal_cores"] = (steal_seconds() - stolen) / (time.time() - started)
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()
    result["others_cores_before"] = quiet
    result["load_average_before"] = load
    if ticks is not None:
        stamps = [float(s) for s in ticks.read_text().split()]
        inside = [s for s in stamps if result["start"] <= s <= result["end"]]
        result["competitor_img_per_s"] = len(inside) * BATCH / (result["end"] - result["start"])
        ticks.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/cpu_threads.json"))
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per case (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--settings", nargs="*", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all cases (medians are shown)")
    parser.add_argument("--retries", type=int, default=2, help="re-measure a case that others disturbed")
    parser.add_argument("--quiet-timeout", type=float, default=300.0,
                        help="longest wait for other processes to go quiet before a case (s)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--adaptive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.seconds, args.warmup, args.min_steps, args.ticks, args.adaptive)
        return

    # rounds over all cases, so slow drifts of the machine spread evenly; the table shows medians
    runs: dict[str, dict[str, list[dict]]] = {name: {case: [] for case in CASES} for name in args.settings}
    for _ in range(args.repeats):
        for name in args.settings:
            for case, rival in CASES.items():
                result = measure(name, None if rival is None else rival or name, args)
                runs[name][case].append(result)
                print(f"{name}, {case}: {result['img_per_s']:.1f} img/s (others {result['others_cores']:.2f} "
                      f"cores)", file=sys.stderr)

    def median(name: str, case: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name][case])

    print(f"quickstart training step (batch {BATCH}), img/s, median of {args.repeats}; {os.cpu_count()} CPUs; "
          f"others: the most CPU other processes took during a window of the row, in cores")
    print(f"{'setting':<44} {'alone':>7} {'twin: this':>11} {'twin: other':>12} {'vs default: this':>17} "
          f"{'default':>8} {'others':>7}")
    for name in args.settings:
        others = max(r["others_cores"] for case in CASES for r in runs[name][case])
        print(f"{name:<44} {median(name, 'alone', 'img_per_s'):>7.1f} {median(name, 'beside_twin', 'img_per_s'):>11.1f} "
              f"{median(name, 'beside_twin', 'competitor_img_per_s'):>12.1f} "
              f"{median(name, 'beside_torch_default', 'img_per_s'):>17.1f} "
              f"{median(name, 'beside_torch_default', 'competitor_img_per_s'):>8.1f} {others:>7.2f}")
    results = {name: {"env": SETTINGS[name], **{case: {"median_img_per_s": median(name, case, "img_per_s"),
                                                        "runs": runs[name][case]} for case in CASES}}
               for name in args.settings}

    import torch

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "batch": BATCH, "seconds": args.seconds, "warmup": args.warmup, "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "results": results,
    }, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
