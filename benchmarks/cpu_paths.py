"""What pays on this CPU: the fast path's training step with and without channels_last and bf16 autocast,
on the CPU as it is and as an older one (emulated), to fill devices.CPU_FAST_PATHS from measurements.

For each model (mnist's FastCNN and course CNN, cifar's quick model, resnet18 at 64 px) a training step
(forward, cross-entropy, backward, SGD) on tensors already in memory is timed (median of repeats after
warm-up, torchtools.lessons.gpu_benchmarks.time_op) in each memory format and precision, and printed as
images/s beside what `devices.fast_path` chooses for the CPU it sees. Each ISA runs in its own process,
because torch and oneDNN read their ISA caps once, at start:

    PYTHONPATH=. .venv/bin/python benchmarks/cpu_paths.py                    # this CPU, then it as AVX2-only
    PYTHONPATH=. .venv/bin/python benchmarks/cpu_paths.py --isa avx2 --threads 2

--isa avx2 sets ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 (an AMD EPYC / older Xeon without
AVX512 or bf16); avx512 caps oneDNN at AVX512_CORE (AVX512 without bf16 or AMX). bf16 rows on a CPU
without native bf16 are emulated (marked so): they show why autocast is off there. Also `--freeze`: a
resnet18 epoch of 224 px pictures in freeze mode, the backbone recomputed each time against the head
trained on features computed once (models/frozen_features.py).

Results (AMX Xeon; AMD EPYC with AVX512-BF16, as it is and capped at AVX2): devices.CPU_FAST_PATHS's
comment and the README's recipes section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ISAS = {"current": {}, "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
        "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
# model name -> (builder, one sample's shape, batch): the commands' own batch sizes for these models.
MODELS = {"mnist-fast": ("mnist", "fast", (1, 28, 28), 256), "mnist-cnn": ("mnist", "cnn", (1, 28, 28), 64),
          "cifar-quick": ("cifar", "quick", (3, 32, 32), 256), "resnet18-64px": ("resnet18", None, (3, 64, 64), 32)}


def build(kind: str, name: str | None):
    if kind == "mnist":
        from torchtools.models import mnist

        return mnist.build(name)
    if kind == "cifar":
        from torchtools.models import cifar

        return cifar.build(name, 10)
    from torchvision.models import resnet18

    return resnet18(num_classes=10)


def measure(args) -> list[dict]:
    """This process's rows: every model x memory format x precision."""
    import torch

    from torchtools.core import devices
    from torchtools.lessons.gpu_benchmarks import Plan, time_op, train_step

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    features, chosen = devices.cpu_features(), devices.fast_path(cpu)
    plan = Plan(repeats=args.repeats, warmup=2, min_block_seconds=0.2)
    rows = []
    for label, (kind, name, shape, batch) in MODELS.items():
        if args.models and label not in args.models:
            continue
        generator = torch.Generator().manual_seed(0)
        inputs, targets = torch.randn(batch, *shape, generator=generator), torch.randint(0, 10, (batch,))
        for memory_format in (torch.contiguous_format, torch.channels_last):
            for dtype in (None, torch.bfloat16):
                torch.manual_seed(0)
                model = build(kind, name).to(memory_format=memory_format)
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                step = train_step(model, optimizer, inputs.contiguous(memory_format=memory_format), targets, cpu, dtype)
                seconds = statistics.median(time_op(step, cpu, plan))
                rows.append({"isa": args.isa, "family": features.family, "model": label, "batch": batch,
                             "channels_last": memory_format == torch.channels_last,
                             "precision": "bf16" + ("" if features.native_bf16 else " (emulated)") if dtype else "fp32",
                             "images_per_s": batch / seconds, "ms": seconds * 1000,
                             "chosen": (memory_format == torch.channels_last) == chosen.channels_last
                             and dtype == chosen.autocast, "repeats": plan.repeats})
    if args.freeze:
        rows += freeze_epoch(args)
    return rows


def freeze_epoch(args) -> list[dict]:
    """Seconds per epoch of `--mode freeze` on resnet18 at 224 px: backbone every epoch vs features once."""
    import time

    import torch
    from torchvision.models import resnet18

    from torchtools.data.loaders import TensorBatches
    from torchtools.models.frozen_features import OnFeatures, head_inputs
    from torchtools.models.pretrained import freeze_backbone

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    count = args.freeze_images
    model = resnet18(num_classes=2).to(memory_format=torch.channels_last)
    freeze_backbone(model, "fc")
    images = torch.randn(count, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(count) % 2
    optimizer = torch.optim.SGD([parameter for parameter in model.parameters() if parameter.requires_grad], lr=0.01)
    batches = TensorBatches(images, labels, batch_size=32, shuffle=True)

    def epoch(network, data) -> float:
        started = time.perf_counter()
        network.train()
        for inputs, targets in data:
            loss = torch.nn.functional.cross_entropy(network(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started

    recomputed = min(epoch(model, batches) for _ in range(2))
    started = time.perf_counter()
    features, targets = head_inputs(model, "fc", TensorBatches(images, labels, batch_size=64), cpu)
    once = time.perf_counter() - started
    head = OnFeatures(model, "fc")
    on_features = min(epoch(head, TensorBatches(features, targets, batch_size=32, shuffle=True)) for _ in range(2))
    return [{"isa": args.isa, "model": f"resnet18 freeze, {count} pictures at 224 px", "recomputed_epoch_s": recomputed,
             "features_once_s": once, "head_epoch_s": on_features}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isa", default="current,avx2", help="comma-separated: current, avx512, avx2")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="", help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--freeze", action="store_true", help="also time a freeze-mode epoch both ways")
    parser.add_argument("--freeze-images", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.models = [name for name in args.models.split(",") if name]
    if args.child:
        print(json.dumps(measure(args)))
        return
    rows = []
    for isa in args.isa.split(","):
        command = [sys.executable, __file__, "--child", "--isa", isa, "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--models", ",".join(args.models), "--freeze-images",
                   str(args.freeze_images)] + (["--freeze"] if args.freeze else [])
        completed = subprocess.run(command, env={**os.environ, **ISAS[isa]}, capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"{isa}: {completed.stderr.strip().splitlines()[-1:]}")
        rows += json.loads(completed.stdout.strip().splitlines()[-1])
    from torchtools.core.devices import cpu_name

    print(f"{cpu_name()}, {args.threads} threads; images/s of one training step (median of {args.repeats})")
    print(f"{'isa':8} {'family':7} {'model':14} {'batch':>5} {'layout':14} {'precision':16} {'img/s':>9} "
          f"{'ms':>8}  torchtools' choice")
    for row in rows:
        if "images_per_s" in row:
            layout = "channels_last" if row["channels_last"] else "contiguous"
            chosen = "<-" if row["chosen"] else ""
            print(f"{row['isa']:8} {row['family']:7} {row['model']:14} {row['batch']:>5} {layout:14} "
                  f"{row['precision']:16} {row['images_per_s']:>9,.0f} {row['ms']:>8.1f}  {chosen}")
        else:
            print(f"{row['isa']:8} {row['model']}: backbone every epoch {row['recomputed_epoch_s']:.2f} s/epoch; "
                  f"features once {row['features_once_s']:.2f} s, then {row['head_epoch_s']:.3f} s/epoch")


if __name__ == "__main__":
    main()
