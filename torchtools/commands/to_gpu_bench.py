"""to-gpu-bench: what moving work to a GPU buys (copies, matmuls, model.to, training steps), against the CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torchtools.core import numbers
from torchtools.core.command import command
from torchtools.core.config import Setting
from torchtools.core.options import OutputSettings

if TYPE_CHECKING:
    from torchtools.core.run import Run


@dataclass(frozen=True, kw_only=True)
class GpuBenchConfig(OutputSettings):
    # The accelerator is this command's own option (its help differs from the training commands' --device).
    device: str = Setting("--device", help="The accelerator to compare with the CPU: auto (CUDA, then MPS), cuda, "
                                           "cuda:N, mps; cpu measures the CPU half only.")("auto")
    quick: bool = Setting("--quick", help="Small sizes and 3 repeats: a smoke run in seconds, not a measurement to "
                                          "quote.")(False)
    repeats: int | None = Setting("--repeats", min=1, max=10**4, show_default=False,
                                  help="Timed repeats per measurement (the median is reported). Default: 5, or 3 "
                                       "with --quick.")()
    matmul_size: int | None = Setting("--matmul-size", min=16, max=2**15, show_default=False,
                                      help="n of the n x n matmuls. Default: 2048, or 256 with --quick.")()
    batch_size: int | None = Setting("--batch-size", "-b", min=1, max=2**16, show_default=False,
                                     help="Batch of the training-step benchmark. Default: 64 (the course's), or 16 "
                                          "with --quick.")()


@command("to-gpu-bench", GpuBenchConfig)
def to_gpu_bench(run: Run[GpuBenchConfig]) -> None:
    """Measure what moving work to a GPU buys: host<->device copy bandwidth (pageable vs pinned), matmul
    GFLOP/s (fp32, tf32, bf16), model.to(device) time and training-step samples/s of the course models,
    each on the CPU and the accelerator, as medians after warm-up. Without a GPU it measures the CPU half."""
    import torch

    from torchtools.lessons import gpu_benchmarks as benchmarking
    from torchtools.core.devices import resolve_device
    from torchtools.core.output import print_table, say, warn

    config = run.config
    run.device = resolve_device(config.device)  # the summary's "device" names the accelerator
    accelerator = run.device if run.device.type != "cpu" else None
    changes = {key: value for key, value in (("repeats", config.repeats), ("matmul_size", config.matmul_size),
                                             ("batch_size", config.batch_size)) if value is not None}
    plan = benchmarking.Plan.quick(**changes) if config.quick else benchmarking.Plan(**changes)
    described = [benchmarking.describe_device(torch.device("cpu"))]
    if accelerator is not None:
        described.append(benchmarking.describe_device(accelerator))
    for entry in described:
        say(f"{entry['device']}: {entry['name']}" + (f", {entry['threads']} threads" if "threads" in entry else ""))
    cpu = described[0]
    if cpu["load_average"] is not None and cpu["load_average"] > (cpu["cores"] or 1):
        # Other work on the cores stalls every multi-threaded op at its barriers: CPU numbers come out low.
        warn(f"the CPU is busy (load average {cpu['load_average']} on {cpu['cores']} cores): "
             "its numbers will be lower than on an idle machine")
    if accelerator is None:
        say("--device cpu: measuring the CPU half only" if config.device.strip().lower() == "cpu" else
            "no GPU was found (CUDA is not available, nor MPS): measuring the CPU half only")
    results, skipped = benchmarking.run(accelerator, plan, report=lambda message: say(f"measuring {message}"))
    for benchmark, title in TITLES.items():
        rows = [result for result in results if result.benchmark == benchmark]
        if not rows:
            continue
        rate = rows[0].unit != "ms"  # rates also show the time per operation and the speedup
        print_table(title.format(plan=plan, baseline=rows[-1].baseline),
                    ["case", "variant", "device", rows[0].unit, *(["ms", "speedup"] if rate else [])],
                    [[row.name, row.variant, row.device, numbers.rate(row.value),
                      *([row.median_ms, f"{row.speedup:.2f}x"] if rate else [])] for row in rows])
    say(f"medians of {plan.repeats} timed repeats after {plan.warmup} warm-up calls each")
    say("training steps run as training does: channels_last where it pays, cuDNN's autotuner on CUDA")
    if any(result.variant == "fp32 (tf32)" for result in results):
        say("fp32 (tf32): fp32 tensors whose convolutions and matmuls run on TF32 tensor cores (fp32's range, "
            "a 10-bit mantissa), as torchtools' fp32 training does on this GPU")
    for entry in skipped:
        say(f"skipped {entry.benchmark} {entry.variant} on {entry.device}: {entry.reason}")
    results_json, skipped_json = benchmarking.as_json(results, skipped)
    run.finish(cuda_available=torch.cuda.is_available(), devices=described, results=results_json,
               skipped=skipped_json)


# One table per benchmark; speedups are against the first row of the same case (see benchmarking.add_speedups).
TITLES = {
    "copy": "copy bandwidth, speedup vs pageable memory",
    "matmul": "matmul throughput, speedup vs {baseline}",
    "to_device": "model.to(device) from the CPU",
    "train_step": "training step (SGD, cross-entropy), batch {plan.batch_size}, speedup vs {baseline}",
}
