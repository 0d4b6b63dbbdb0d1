"""to-gpu-bench: the CPU half's JSON and tables, the no-GPU message, device errors, the accelerator-only parts."""

import math

import pytest
import torch

from conftest import assert_user_error

TINY = ("--quick", "--repeats", "1", "--matmul-size", "64", "--batch-size", "4")
UNITS = {"copy": "GB/s", "matmul": "GFLOP/s", "to_device": "ms", "train_step": "samples/s"}
NO_GPU = not torch.cuda.is_available() and not torch.backends.mps.is_available()


def test_cpu_half_json_tables_and_positive_throughputs(cli):
    run = cli("to-gpu-bench", *TINY, "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["command"] == "to-gpu-bench"
    assert summary["cuda_available"] is torch.cuda.is_available()
    cpu = summary["devices"][0]
    assert cpu["device"] == "cpu" and cpu["name"] and cpu["threads"] >= 1
    results = summary["results"]
    for result in results:
        assert set(result) == {"benchmark", "name", "variant", "device", "value", "unit", "median_ms", "repeats",
                               "baseline", "speedup"}
        assert result["unit"] == UNITS[result["benchmark"]]
        assert math.isfinite(result["value"]) and result["value"] > 0 and result["median_ms"] > 0
        assert result["repeats"] == 1
    on_cpu = {(result["benchmark"], result["name"], result["variant"]): result
              for result in results if result["device"] == "cpu"}
    assert set(on_cpu) >= {("matmul", "64x64", "fp32"), ("train_step", "mnist-cnn", "fp32"),
                           ("train_step", "cifar-quick", "fp32")}
    matmul = on_cpu["matmul", "64x64", "fp32"]
    assert matmul["value"] == pytest.approx(2 * 64**3 / 1e9 / (matmul["median_ms"] / 1000))  # from the median
    assert (matmul["baseline"], matmul["speedup"]) == ("cpu fp32", 1.0)
    step = on_cpu["train_step", "mnist-cnn", "fp32"]
    assert step["value"] == pytest.approx(4 / (step["median_ms"] / 1000))  # samples/s: batch 4 per step
    assert "matmul throughput" in run.stderr and "training step (SGD, cross-entropy), batch 4" in run.stderr
    assert len(run.stdout.strip().splitlines()) == 1
    if NO_GPU:
        assert "no GPU was found" in run.stderr
        assert summary["device"] == "cpu" and len(summary["devices"]) == 1
        assert {result["device"] for result in results} == {"cpu"}
        assert {"copy", "to_device"}.isdisjoint(result["benchmark"] for result in results)
    for entry in summary["skipped"]:
        assert entry["reason"] and f"skipped {entry['benchmark']} {entry['variant']} on {entry['device']}" in run.stderr


def test_device_cpu_measures_only_the_cpu_half(cli):
    run = cli("to-gpu-bench", *TINY, "--device", "cpu", "--json")
    assert run.exit_code == 0, run.stderr
    assert "--device cpu: measuring the CPU half only" in run.stderr
    assert {result["device"] for result in run.summary["results"]} == {"cpu"}


def test_absent_or_unknown_device_exits_2(cli):
    absent = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    assert_user_error(cli("to-gpu-bench", *TINY, "--device", absent), "cuda")
    assert_user_error(cli("to-gpu-bench", *TINY, "--device", "tpu"), "unknown device")


def test_accelerator_only_parts_with_the_cpu_standing_in():
    """Copies and model.to run only with an accelerator; the CPU stands in to check they measure and compare."""
    from torchtools.lessons import gpu_benchmarks as benchmarking

    plan = benchmarking.Plan.quick(repeats=2, copy_mib=(1, 2))
    copies, skipped = benchmarking.copy_bandwidth(torch.device("cpu"), plan)
    moves, _ = benchmarking.to_device_time(torch.device("cpu"), plan)
    benchmarking.add_speedups(copies + moves)
    assert [(result.name, result.variant) for result in copies] == [
        ("h2d 1 MiB", "pageable"), ("d2h 1 MiB", "pageable"), ("h2d 2 MiB", "pageable"), ("d2h 2 MiB", "pageable")]
    assert all(result.value > 0 and result.speedup == 1.0 for result in copies)
    assert [entry.variant for entry in skipped] == ["pinned"]  # pinned memory only with CUDA
    assert [result.name for result in moves] == ["mnist-cnn", "resnet18"]
    # 8,490 fp32 parameters; ResNet-18: 11.7 M parameters plus the batch-norm buffers
    assert moves[0].variant == "0.034 MB" and moves[1].variant == "46.8 MB"
    assert all(result.unit == "ms" and result.speedup is None for result in moves)
