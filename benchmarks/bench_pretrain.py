"""Pretraining throughput: images per second of ``biomoe pretrain`` on 1 and N processes, and the speed-up.

Each setting runs ``biomoe pretrain`` twice from scratch, for ``--steps`` and
for twice as many steps, and divides the extra images by the extra wall time,
so start-up, the held-out measurement and the checkpoint writes cancel out.
The images are generated on the fly as in any run, in the training process
or in ``--workers`` DataLoader processes per rank. A second figure, "model
alone", is the forward and backward passes of one process on one fixed batch
(no image making, no optimiser): when it is far above the end-to-end rate the
run waits on the images, and more workers (CPU cores) would help. Several processes are launched by torchrun
(``python -m torch.distributed.run --standalone``), gloo on the CPU; the CPU
threads are shared out between them (``--threads`` in all), so the speed-up
``rate(N) / rate(1)`` is at the same hardware and the same global batch; on
one device per process (GPUs) ``speed-up / N`` is the scaling efficiency.

Usage::

    python -m benchmarks.bench_pretrain [--processes 1 2] [--steps 8] [--global-batch 16] [--threads 2]
                                        [--device cpu] [--trainable late] [--workers 0]
    python -m benchmarks.bench_pretrain --processes 1 --device cuda --trainable all --global-batch 256 --workers 14
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _command(processes: int, out: Path, args: argparse.Namespace, steps: int) -> list[str]:
    pretrain = ["--out", str(out), "--steps", str(steps), "--global-batch", str(args.global_batch),
                "--holdout-size", str(args.global_batch), "--corpus-size", str(100 * args.global_batch),
                "--device", args.device, "--trainable", args.trainable,
                "--threads", str(max(1, args.threads // processes)), "--workers", str(args.workers)]
    if processes == 1:
        return [sys.executable, "-m", "edge.cli", "pretrain", *pretrain]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "edge.cli", "pretrain", *pretrain]


def images_per_second(processes: int, args: argparse.Namespace) -> float:
    """Extra images over extra wall time between a run of ``steps`` and one of ``2 * steps`` steps."""
    walls = []
    for steps in (args.steps, 2 * args.steps):
        with tempfile.TemporaryDirectory(prefix="biomoe-bench-pretrain-") as folder:
            started = time.perf_counter()
            subprocess.run(_command(processes, Path(folder) / "run", args, steps), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls.append(time.perf_counter() - started)
    return args.steps * args.global_batch / (walls[1] - walls[0])


def model_images_per_second(args: argparse.Namespace, repeats: int = 10) -> float:
    """Forward and backward passes of one process on one fixed batch of ``--global-batch`` images."""
    import torch

    from training.models import tiny_biomoe
    from training.settings import DEFAULT_SPEC, set_trainable

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = tiny_biomoe().to(device).train()
    set_trainable(model, args.trainable)
    size = DEFAULT_SPEC.image_size
    images = torch.rand(args.global_batch, 3, size, size, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            loss = model(images).float().square().mean()
        loss.backward()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return repeats * args.global_batch / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts (default 1 2)")
    parser.add_argument("--steps", type=int, default=8, help="steps of the shorter run (default 8)")
    parser.add_argument("--global-batch", type=int, default=16, help="images per step over all processes")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads shared by the processes (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--trainable", choices=("late", "all"), default="late", help="layers trained (default late)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes per rank making the images (default 0: the training process)")
    args = parser.parse_args(argv)
    if min(args.processes) < 1 or args.steps < 1 or args.workers < 0:
        parser.error("--processes and --steps must be positive, --workers at least 0")
    rates = {n: images_per_second(n, args) for n in args.processes}
    single = rates.get(1)
    print(f"| processes | images/s | speed-up |  ({args.device}, global batch {args.global_batch}, "
          f"trainable {args.trainable}, {args.threads} threads in all, {args.workers} workers per rank; "
          f"model alone, one process: {model_images_per_second(args):.1f} images/s)")
    print("| ---: | ---: | ---: |")
    for n, rate in rates.items():
        speedup = f"{rate / single:.2f}x" if single else "-"
        print(f"| {n} | {rate:.1f} | {speedup} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
