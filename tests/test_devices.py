"""Devices as users name them, with CUDA faked where the machine has none: the device string, the reasons
CUDA is missing, torchrun's own GPU, what `prepare` sets, what pays per GPU and CPU family."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import assert_user_error
from torchtools.core import devices
from torchtools.core.errors import UserError

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with two GPUs as torch.cuda reports them: cuda:0 a V100 (7.0), cuda:1 an A100 (8.0)."""
    calls = {"set_device": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls["set_device"].append(str(device)))
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: {0: (7, 0), 1: (8, 0)}[torch.device(device).index])
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    return calls


def test_auto_and_cuda_name_the_index(fake_cuda):
    assert str(devices.resolve_device("auto")) == "cuda:0"
    assert str(devices.resolve_device("cuda")) == "cuda:0"
    assert str(devices.resolve_device(" CUDA:1 ")) == "cuda:1"
    with pytest.raises(UserError, match=r"has 2 CUDA device\(s\) \(cuda:0 to cuda:1\)"):
        devices.resolve_device("cuda:2")


def test_the_toy_lessons_stay_on_the_cpu_under_auto(fake_cuda):
    assert devices.resolve_device("auto", prefer_cpu=True) == torch.device("cpu")
    assert str(devices.resolve_device("cuda", prefer_cpu=True)) == "cuda:0"  # asked for by name: honoured


def test_under_torchrun_each_process_takes_its_local_rank(fake_cuda, monkeypatch):
    for name, value in TORCHRUN.items():
        monkeypatch.setenv(name, value)
    assert str(devices.resolve_device("auto")) == str(devices.resolve_device("cuda")) == "cuda:1"
    assert str(devices.resolve_device("cuda:1")) == "cuda:1"  # a launcher passing cuda:$LOCAL_RANK
    with pytest.raises(UserError, match=r"process 1 \(cuda:1\); pass --device cuda or auto"):
        devices.resolve_device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UserError, match="--nproc-per-node 2 or fewer"):
        devices.resolve_device("auto")


def test_cuda_without_cuda_says_why_and_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(UserError, match="CPU-only build.*--device cpu or --device auto"):
        devices.resolve_device("cuda")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UserError, match="CUDA_VISIBLE_DEVICES='' hides every GPU"):
        devices.resolve_device("cuda:0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(UserError, match="built for CUDA 12.4 but finds no GPU.*nvidia-smi.*--device cpu"):
        devices.resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_the_command_line_says_it_in_one_error_line(cli):
    run = cli("diabetes", "--device", "cuda", "--epochs", "1")
    assert_user_error(run, "--device cuda: CUDA is not available", "--device cpu or --device auto")


def test_prepare_sets_the_training_device_up(fake_cuda, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    precision = torch.get_float32_matmul_precision()
    try:
        assert devices.prepare(torch.device("cpu")) == torch.device("cpu")
        assert not torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == precision
        devices.prepare(torch.device("cuda", 0))  # 7.0: no TF32 to turn on
        assert fake_cuda["set_device"] == ["cuda:0"] and torch.backends.cudnn.benchmark
        assert torch.get_float32_matmul_precision() == precision
        devices.prepare(torch.device("cuda", 1))  # 8.0: TF32 matmuls
        assert fake_cuda["set_device"][-1] == "cuda:1" and torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(precision)


def test_autocast_follows_the_chosen_gpus_own_capability(fake_cuda, monkeypatch):
    # is_bf16_supported counts emulated bf16 and asks the current device: it must not be what decides.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert devices.fast_path(torch.device("cuda", 0)) == devices.FastPath(True, torch.float16)  # V100: fp16
    assert devices.fast_path(torch.device("cuda", 1)) == devices.FastPath(True, torch.bfloat16)  # A100: bf16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))
    assert devices.autocast_dtype(torch.device("cuda", 0)) is None  # Pascal: no tensor cores


AMX = frozenset("avx2 avx512f avx512_bf16 amx_bf16 amx_tile".split())


@pytest.mark.parametrize("flags, aten, limit, family, amp", [
    (AMX, "AVX512", None, "amx", torch.bfloat16),  # Sapphire Rapids and later Xeons
    (AMX, "AVX2", "AVX2", "avx2", None),  # the same CPU emulating an AVX2-only one
    (frozenset("avx2 avx512f avx512_bf16".split()), "AVX512", None, "avx512", torch.bfloat16),  # Zen 4, Cooper Lake
    (frozenset("avx2 avx512f".split()), "AVX512", None, "avx512", None),  # Skylake-X
    (frozenset("avx avx2 fma".split()), "AVX2", None, "avx2", None),  # the AMD EPYC
    (AMX, "AVX512", "AVX512_CORE", "avx512", None),  # oneDNN capped below bf16
    (frozenset("fp asimd".split()), "DEFAULT", None, "other", None),  # an ARM server
])
def test_cpu_families_decide_autocast_and_memory_format(monkeypatch, flags, aten, limit, family, amp):
    monkeypatch.setattr(devices, "_cpuinfo", lambda: ("a CPU", flags))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if limit:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert devices.cpu_features().family == family
    assert devices.autocast_dtype(torch.device("cpu")) == amp
    assert devices.channels_last(torch.device("cpu")) == (family != "other")


def test_an_emulated_avx2_cpu_gets_no_bf16(tmp_path):
    """What the lead's benchmark uses: the environment that makes torch and oneDNN stop at AVX2."""
    code = ("import torch; from torchtools.core import devices; f = devices.cpu_features(); "
            "print(f.family, devices.autocast_dtype(torch.device('cpu')))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["avx2", "None"]
