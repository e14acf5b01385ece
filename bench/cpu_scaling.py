"""Does this machine run P single-thread stages at once at full speed? The answer bounds `otjr repro -j P`.

Times one fixed piece of work, training steps of the Fashion-MNIST tier (preset `fashion-mnist`: its model,
method, batch and training adversary, one torch thread, random images), in 1 process and in P processes
started together, alternated R times. Prints the wall seconds of each process and the throughput of P at
once relative to P times one: 1.0 means the cores are independent, 1/P means they share one core's worth
(SMT siblings, or a host that gives the VM less than it shows).

    python bench/cpu_scaling.py [--processes 2] [--repeats 2] [--steps 20] [--method pgd_at]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def work(method_name: str, steps: int, start, out) -> None:
    import torch

    from pipeline import presets
    from pipeline.config import load_params
    from pipeline.core.pgd import Adversary
    from pipeline.methods import METHODS, Setup
    from pipeline.models import create

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        p = load_params(presets.apply("fashion-mnist", Path(tmp) / "params.yaml"))
    torch.manual_seed(0)
    model = create(p.model.name, num_classes=10, in_channels=1, **p.model.args).train()
    a = p.adversary
    method = METHODS.get(method_name)(p.for_method(method_name),
                                      Setup(adversary=Adversary(a.eps, a.step, a.steps, a.start, a.start_std),
                                            num_classes=10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(p.train.batch_size, 1, 28, 28), torch.randint(0, 10, (p.train.batch_size,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        method.loss(model, x, y).total.backward()
        opt.step()

    step()  # warm-up, outside the timing
    start.wait()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    out.put(time.perf_counter() - tic)


def timed(processes: int, method: str, steps: int) -> list[float]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=work, args=(method, steps, start, out)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    seconds = sorted(out.get() for _ in procs)
    for proc in procs:
        proc.join()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--method", default="pgd_at")
    a = ap.parse_args()
    print(f"{a.steps} training steps of {a.method} (preset fashion-mnist), one torch thread per process")
    print("| repeat | 1 process: s | " + f"{a.processes} at once: s each | throughput ratio |")
    print("|---|---:|---:|---:|")
    for r in range(1, a.repeats + 1):
        one = timed(1, a.method, a.steps)[0]
        many = timed(a.processes, a.method, a.steps)
        ratio = one / max(many)  # P at once did P times the work of one in max(many) seconds
        print(f"| {r} | {one:.1f} | {', '.join(f'{s:.1f}' for s in many)} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
