"""What moving work to an accelerator buys, measured honestly: host<->device copy bandwidth (pageable vs
pinned), matmul throughput, `model.to(device)` time and training-step throughput.

Every number is a median over repeats, taken after warm-up calls (lazy initialisation, allocator growth,
kernel selection) with the device synchronised before and after each timed block, so queued GPU work is
counted. `torch.utils.benchmark.Timer` is not used: it pins CPU runs to one thread by default and does not
synchronise MPS.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from torchtools.core.devices import autocast_dtype, cpu_name, fast_path, prepare
from torchtools.models import cifar, mnist

RATES = {"GB/s", "GFLOP/s", "samples/s"}  # higher is better; these get speedup ratios
# The two course models of the training-step benchmark: name -> (builder, input shape of one sample).
TRAIN_MODELS = {"mnist-cnn": (mnist.CourseCNN, (1, 28, 28)), "cifar-quick": (cifar.quick, (3, 32, 32))}


@dataclass(frozen=True)
class Plan:
    repeats: int = 5
    warmup: int = 2
    min_block_seconds: float = 0.05  # fast operations are repeated within a timed block at least this long
    copy_mib: tuple[int, ...] = (1, 16, 256)
    matmul_size: int = 2048
    batch_size: int = 64

    @classmethod
    def quick(cls, **changes) -> Plan:
        """A smoke run of every benchmark in a few seconds on a small CPU: small sizes, few repeats."""
        return cls(**{"repeats": 3, "warmup": 1, "min_block_seconds": 0.005, "copy_mib": (1, 8),
                      "matmul_size": 256, "batch_size": 16, **changes})


@dataclass
class Result:
    """One measured row. `speedup` is `value` over the `baseline` row's value (rates only)."""

    benchmark: str  # copy | matmul | to_device | train_step
    name: str  # what was measured: "h2d 16 MiB", "2048x2048", "resnet18", "mnist-cnn"
    variant: str  # how: "pageable"/"pinned", "fp32"/"tf32"/"bf16", "fp32"/"fp32 (tf32)"/"autocast bf16", "46.8 MB"
    device: str
    value: float  # the median, in `unit`
    unit: str  # GB/s | GFLOP/s | ms | samples/s
    median_ms: float  # median time of one operation
    repeats: int
    baseline: str | None = None
    speedup: float | None = None


@dataclass
class Skipped:
    benchmark: str
    variant: str
    device: str
    reason: str


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_op(op: Callable[[], object], device: torch.device, plan: Plan,
            setup: Callable[[], object] | None = None) -> list[float]:
    """Seconds per call of `op`, one number per repeat. Without `setup`, a repeat is a block of as many calls
    as fill `plan.min_block_seconds` (one call of a small GPU kernel is shorter than a synchronisation), sized
    from the last warm-up call; with it, `setup` runs untimed before every single timed call."""
    for _ in range(max(plan.warmup, 1)):
        if setup is not None:
            setup()
        synchronize(device)
        started = time.perf_counter()
        op()
        synchronize(device)
    last = time.perf_counter() - started
    calls = 1 if setup is not None else max(1, math.ceil(plan.min_block_seconds / max(last, 1e-9)))
    times = []
    for _ in range(plan.repeats):
        if setup is not None:
            setup()
        synchronize(device)
        started = time.perf_counter()
        for _ in range(calls):
            op()
        synchronize(device)
        times.append((time.perf_counter() - started) / calls)
    return times


def _result(benchmark: str, name: str, variant: str, device: torch.device, times: list[float], *,
            work: float, unit: str) -> Result:
    """`work` per call divided by the median time gives the rate (work 0: the unit is milliseconds)."""
    median = statistics.median(times)
    value = work / median if work else median * 1000
    return Result(benchmark, name, variant, str(device), value, unit, median * 1000, len(times))


def copy_bandwidth(device: torch.device, plan: Plan) -> tuple[list[Result], list[Skipped]]:
    """Host-to-device and device-to-host copies of 1..N MiB, from pageable and from pinned host memory."""
    results, skipped = [], []
    kinds = ["pageable", "pinned"]
    if device.type != "cuda":
        kinds = ["pageable"]
        skipped.append(Skipped("copy", "pinned", str(device), "pinned (page-locked) host memory is a CUDA feature"))
    for mib in plan.copy_mib:
        size = mib * 2**20
        on_device = torch.empty(size, dtype=torch.uint8, device=device)
        for kind in kinds:
            host = torch.ones(size, dtype=torch.uint8, pin_memory=kind == "pinned")
            # Pinned memory lets the copy run asynchronously (DMA); the synchronisation in time_op waits for it.
            blocking = kind == "pageable"
            for name, op in ((f"h2d {mib} MiB", lambda: on_device.copy_(host, non_blocking=not blocking)),
                             (f"d2h {mib} MiB", lambda: host.copy_(on_device, non_blocking=not blocking))):
                results.append(_result("copy", name, kind, device, time_op(op, device, plan), work=size / 1e9,
                                       unit="GB/s"))
    return results, skipped


def matmul_variants(device: torch.device) -> tuple[list[tuple[str, torch.dtype, str]], list[Skipped]]:
    """(label, dtype, fp32 matmul precision) for each matmul precision the device runs natively, and what is
    skipped. TF32 is fp32 tensors with `set_float32_matmul_precision("high")`."""
    variants, skipped = [("fp32", torch.float32, "highest")], []
    if device.type == "cuda":
        if _runs_tf32(device):
            variants.append(("tf32", torch.float32, "high"))
        else:
            skipped.append(Skipped("matmul", "tf32", str(device), "TF32 tensor cores need compute capability 8.0+"))
    else:
        skipped.append(Skipped("matmul", "tf32", str(device), "TF32 is a CUDA (Ampere+) format"))
    if _runs_bf16(device):
        variants.append(("bf16", torch.bfloat16, "highest"))
    else:
        reason = ("no native bf16 on this CPU (AMX / AVX512-BF16); emulated bf16 is many times slower than fp32"
                  if device.type == "cpu" else "bf16 is not supported on this device")
        skipped.append(Skipped("matmul", "bf16", str(device), reason))
    return variants, skipped


def _runs_bf16(device: torch.device) -> bool:
    if device.type in ("cpu", "cuda"):  # native bf16 only (CUDA 8.0+, AMX / AVX512-BF16), as --amp decides
        return autocast_dtype(device) == torch.bfloat16
    try:
        torch.ones(2, 2, dtype=torch.bfloat16, device=device) @ torch.ones(2, 2, dtype=torch.bfloat16, device=device)
        return True
    except (RuntimeError, TypeError):
        return False


def matmul_throughput(device: torch.device, plan: Plan) -> tuple[list[Result], list[Skipped]]:
    """n x n @ n x n, 2n^3 floating-point operations, in each precision the device runs natively."""
    n = plan.matmul_size
    variants, skipped = matmul_variants(device)
    results = []
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=generator), torch.randn(n, n, generator=generator)
    # The public setting, not backends.cuda.matmul.allow_tf32: mixing the legacy and new TF32 flags is an error.
    previous = torch.get_float32_matmul_precision()
    try:
        for label, dtype, precision in variants:
            torch.set_float32_matmul_precision(precision)
            x, y = a.to(device, dtype), b.to(device, dtype)
            results.append(_result("matmul", f"{n}x{n}", label, device, time_op(lambda: x @ y, device, plan),
                                   work=2 * n**3 / 1e9, unit="GFLOP/s"))
    finally:
        torch.set_float32_matmul_precision(previous)
    return results, skipped


def to_device_time(device: torch.device, plan: Plan) -> tuple[list[Result], list[Skipped]]:
    """`model.to(device)` from the CPU, for the course CNN and a torchvision ResNet-18 (moved back between calls)."""
    from torchvision.models import resnet18

    results = []
    for name, model in (("mnist-cnn", mnist.CourseCNN()), ("resnet18", resnet18())):
        megabytes = sum(tensor.numel() * tensor.element_size()
                        for tensor in [*model.parameters(), *model.buffers()]) / 1e6
        times = time_op(lambda: model.to(device), device, plan, setup=lambda: model.to("cpu"))
        results.append(_result("to_device", name, f"{megabytes:.3g} MB", device, times, work=0, unit="ms"))
    return results, []


def train_step_throughput(device: torch.device, plan: Plan) -> tuple[list[Result], list[Skipped]]:
    """Samples per second of one SGD step (forward, cross-entropy, backward, update) of each course model on
    data already on the device, as training runs it: the device prepared as for training (cuDNN's autotuner),
    the memory format training uses there, and fp32 then the autocast `--amp` uses (fp16 with loss scaling).

    On a GPU with TF32 (compute capability 8.0+) the fp32 row is "fp32 (tf32)": training's fp32 runs its
    convolutions (cuDNN's default) and matmuls (`prepare` sets "high" precision) on TF32 tensor cores, with
    fp32's range and a 10-bit mantissa; that row measures that, not strict IEEE fp32.
    """
    path = fast_path(device)
    amp = path.autocast
    fp32 = "fp32 (tf32)" if _runs_tf32(device) else "fp32"
    variants = [(fp32, None)] + ([(f"autocast {_dtype_name(amp)}", amp)] if amp is not None else [])
    skipped = [] if amp is not None else [Skipped(
        "train_step", "autocast", str(device),
        "no reduced precision that pays off here (the --amp rule: CUDA 7.0+, or CPUs with AMX / AVX512-BF16)")]
    memory_format = torch.channels_last if path.channels_last else torch.contiguous_format
    results = []
    previous = torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark
    try:
        prepare(device)
        for name, (build, shape) in TRAIN_MODELS.items():
            generator = torch.Generator().manual_seed(0)
            inputs = torch.randn(plan.batch_size, *shape, generator=generator).to(device, memory_format=memory_format)
            targets = torch.randint(0, 10, (plan.batch_size,), generator=generator).to(device)
            for label, dtype in variants:
                torch.manual_seed(0)
                model = build().to(device, memory_format=memory_format)
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)  # the course's optimizer
                step = train_step(model, optimizer, inputs, targets, device, dtype)
                results.append(_result("train_step", name, label, device, time_op(step, device, plan),
                                       work=plan.batch_size, unit="samples/s"))
    finally:
        torch.set_float32_matmul_precision(previous[0])
        torch.backends.cudnn.benchmark = previous[1]
    return results, skipped


def _runs_tf32(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs, targets, device: torch.device,
               dtype: torch.dtype | None) -> Callable[[], None]:
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # one per run, as fit has

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def add_speedups(results: list[Result]) -> None:
    """Each rate is compared with the first row measured for the same benchmark and name: the CPU fp32 row
    for matmuls and training steps, pageable memory for copies. Times (model.to) get no ratio."""
    baselines: dict[tuple[str, str], Result] = {}
    for result in results:
        if result.unit not in RATES:
            continue
        baseline = baselines.setdefault((result.benchmark, result.name), result)
        result.baseline = f"{baseline.device} {baseline.variant}"
        result.speedup = result.value / baseline.value if baseline.value > 0 else None


def describe_device(device: torch.device) -> dict:
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return {"device": str(device), "name": properties.name,
                "capability": f"{properties.major}.{properties.minor}",
                "memory_gib": round(properties.total_memory / 2**30, 1)}
    if device.type == "mps":
        return {"device": "mps", "name": f"Apple GPU ({platform.machine()})"}
    return {"device": "cpu", "name": cpu_name(), "threads": torch.get_num_threads(), "cores": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def run(accelerator: torch.device | None, plan: Plan,
        report: Callable[[str], None] = lambda message: None) -> tuple[list[Result], list[Skipped]]:
    """The CPU half (matmul, training steps), then, with an accelerator, copies, its matmuls, model.to and
    its training steps; CPU rows first so they are the baselines of the speedups."""
    devices = [torch.device("cpu")] + ([accelerator] if accelerator is not None else [])
    results, skipped = [], []
    for device in devices:
        steps = [("matmul", matmul_throughput), ("training steps", train_step_throughput)]
        if device.type != "cpu":
            steps = [("copies", copy_bandwidth), *steps, ("model.to", to_device_time)]
        for label, measure in steps:
            report(f"{device}: {label}")
            measured, left_out = measure(device, plan)
            results += measured
            skipped += left_out
    order = {"copy": 0, "matmul": 1, "to_device": 2, "train_step": 3}
    results.sort(key=lambda result: order[result.benchmark])  # stable: CPU rows stay first within each
    add_speedups(results)
    return results, skipped


def as_json(results: list[Result], skipped: list[Skipped]) -> tuple[list[dict], list[dict]]:
    return [asdict(result) for result in results], [asdict(entry) for entry in skipped]
