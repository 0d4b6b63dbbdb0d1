"""Devices: the one resolver (`--device auto|cpu|cuda|cuda:N|mps`), the one preparation of a device for
training, and what pays on the hardware at hand (autocast dtype, memory format), decided in `fast_path`.

The choices, each made once here:
- `auto` is CUDA (as cuda:INDEX, always with its index), then MPS, then the CPU; the toy lessons pass
  `prefer_cpu=True` (a few hundred rows train faster on the CPU than CUDA takes to start).
- Under torchrun each process trains on cuda:LOCAL_RANK; an explicit other index is an error.
- bf16 autocast only where bf16 is native: CUDA compute capability 8.0+ (not `is_bf16_supported()`,
  which also counts emulated bf16), CPUs with AMX or AVX512-BF16 that oneDNN may use. fp16 with a
  GradScaler on CUDA 7.x; nothing elsewhere (emulated low precision is slower than fp32).
- `prepare` (training): cuda.set_device, cudnn.benchmark, and TF32 matmuls where the GPU has TF32.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass

import torch

from torchtools.core import distributed, threads
from torchtools.core.errors import UserError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# oneDNN's ISA levels, lowest first (ONEDNN_MAX_CPU_ISA caps what it uses; names as in its documentation).
_ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
                "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16")


def resolve_device(name: str, *, prefer_cpu: bool = False) -> torch.device:
    """The device `--device NAME` means; an explicit device that is absent is an error, never a fallback."""
    name = name.strip().lower()
    if not _DEVICE_PATTERN.match(name):
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        if prefer_cpu:
            return torch.device("cpu")
        if torch.cuda.is_available():
            return _cuda_device(None, "auto")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        return _cuda_device(device.index, name)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: MPS is not available on this machine (it needs Apple silicon and macOS "
                        "12.3+); pass --device cpu or --device auto")
    return device


def _cuda_device(index: int | None, name: str) -> torch.device:
    """cuda:INDEX, checked: CUDA present, the index on this machine, and under torchrun this process's own."""
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available: {_why_no_cuda()}")
    count = torch.cuda.device_count()
    launch = distributed.launch_environment()
    if launch is not None:
        if launch.local_rank >= count:
            raise UserError(f"torchrun started process {launch.local_rank} on this machine, which has {count} "
                            f"CUDA device(s): pass --nproc-per-node {count} or fewer")
        if index is not None and index != launch.local_rank:
            raise UserError(f"--device {name}: under torchrun each process trains on cuda:LOCAL_RANK, and this is "
                            f"process {launch.local_rank} (cuda:{launch.local_rank}); pass --device cuda or auto")
        return torch.device("cuda", launch.local_rank)
    if index is None:
        index = torch.cuda.current_device()
    if index >= count:
        raise UserError(f"--device {name}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def _why_no_cuda() -> str:
    """Why torch sees no GPU, and what to do: a CPU-only build, hidden devices, or no driver."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return (f"this PyTorch ({torch.__version__}) is a CPU-only build; install a CUDA build "
                "(https://pytorch.org/get-started/locally/), or pass --device cpu or --device auto")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU; unset it, or pass --device cpu or --device auto"
    return (f"PyTorch is built for CUDA {torch.version.cuda or torch.version.hip} but finds no GPU (no GPU here, or "
            "no working driver: `nvidia-smi` shows which); pass --device cpu or --device auto")


def prepare(device: torch.device) -> torch.device:
    """Set a device up for training, once per run: the current CUDA device, cuDNN's autotuner (the
    batch shapes repeat, so picking the fastest convolution algorithm once pays) and TF32 matmuls where
    the GPU has TF32 (Ampere, 8.0+; cuDNN convolutions use TF32 there by default already). On the CPU
    nothing changes: "high" matmul precision selects oneDNN's TF32 mode, which no x86 CPU runs (the
    numbers stay bitwise those of "highest" on an AMX Xeon), so it is left alone."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        if torch.cuda.get_device_capability(device) >= (8, 0):
            torch.set_float32_matmul_precision("high")
    return device


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU runs natively, as the kernels see it: the flags of /proc/cpuinfo capped by torch's own
    kernel level (ATEN_CPU_CAPABILITY) and by oneDNN's (ONEDNN_MAX_CPU_ISA), so an emulated older CPU
    (`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`) is treated as one."""

    name: str
    flags: frozenset[str]
    aten: str  # torch.backends.cpu.get_cpu_capability(): AVX512, AVX2, DEFAULT, SVE256, ...
    onednn_limit: str | None = None  # ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA), upper-cased; None: no cap

    def _onednn_allows(self, isa: str) -> bool:
        limit = self.onednn_limit
        if limit in (None, "ALL", "DEFAULT") or limit not in _ONEDNN_ISAS:
            return True
        return _ONEDNN_ISAS.index(limit) >= _ONEDNN_ISAS.index(isa)

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags and self._onednn_allows("AVX512_CORE_AMX") and self.aten == "AVX512"

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags and self._onednn_allows("AVX512_CORE") and self.aten == "AVX512"

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls and convolutions in hardware (AMX or AVX512-BF16); elsewhere bf16 is emulated."""
        return self.amx or ("avx512_bf16" in self.flags and self.avx512 and self._onednn_allows("AVX512_CORE_BF16"))

    @property
    def family(self) -> str:
        """The kind of CPU the fast-path table is keyed on: amx, avx512, avx2 or other."""
        if self.amx:
            return "amx"
        if self.avx512:
            return "avx512"
        if "avx2" in self.flags and self._onednn_allows("AVX2") and self.aten in ("AVX2", "AVX512"):
            return "avx2"
        return "other"


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    name, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:  # x86, ARM
                    flags = frozenset(value.split())
    except OSError:
        pass
    if not name:
        name = platform.processor() or platform.machine()
    return name, flags


def cpu_features() -> CpuFeatures:
    name, flags = _cpuinfo()
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return CpuFeatures(name, flags, torch.backends.cpu.get_cpu_capability(), limit.strip().upper() if limit else None)


def cpu_name() -> str:
    """The processor's model name (for benchmark reports: figures only compare on the same CPU)."""
    return _cpuinfo()[0]


@dataclass(frozen=True)
class FastPath:
    """What pays on a device: NHWC convolutions, and the dtype `--amp` autocasts to (None: fp32)."""

    channels_last: bool
    autocast: torch.dtype | None


# Per CPU family, measured with benchmarks/cpu_paths.py (a training step on tensors, 2 threads; mnist fast,
# mnist cnn, cifar quick, resnet18 at 64 px). channels_last: oneDNN's convolutions take NHWC without
# reordering each tensor into its blocked layout: 1.5x on the AMX Xeon (fp32 and bf16); on an AMD EPYC
# with AVX512-BF16 (no AMX) 1.59x, 1.47x, 1.71x, 1.05x in fp32; the same EPYC capped at AVX2 (emulating
# an AVX2-only CPU) 1.95x, 1.67x, 1.25x, 1.10x. bf16 only where it is native: on that EPYC bf16 is 1.28x,
# 0.99x, 1.81x, 1.65x of fp32 (channels_last both); emulated on AVX2 it is 0.11x, 0.18x, 0.09x, 0.10x.
CPU_FAST_PATHS = {
    "amx": FastPath(channels_last=True, autocast=torch.bfloat16),
    "avx512": FastPath(channels_last=True, autocast=None),  # AVX512-BF16 without AMX: see fast_path
    "avx2": FastPath(channels_last=True, autocast=None),
    "other": FastPath(channels_last=False, autocast=None),
}


def fast_path(device: torch.device) -> FastPath:
    """The one place that decides, per device (and per CPU family), the memory format and autocast dtype."""
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        # bf16 tensor cores from Ampere (8.0); Volta/Turing (7.x) have fp16 tensor cores only; older GPUs none.
        amp = torch.bfloat16 if capability >= (8, 0) else torch.float16 if capability >= (7, 0) else None
        return FastPath(channels_last=True, autocast=amp)
    if device.type == "cpu":
        features = cpu_features()
        path = CPU_FAST_PATHS[features.family]
        if features.native_bf16 and path.autocast is None:
            path = FastPath(path.channels_last, torch.bfloat16)
        return path
    return FastPath(channels_last=False, autocast=None)  # MPS and others: as PyTorch runs them by default


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision `--amp` trains in on this device, or None where it does not pay off."""
    return fast_path(device).autocast


def channels_last(device: torch.device) -> bool:
    return fast_path(device).channels_last


def device_line(device: torch.device, amp_dtype: torch.dtype | None) -> str:
    """The line a run starts training with: the device, the precision and the CPU threads (measured now)."""
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[amp_dtype]
    if device.type == "cuda" and amp_dtype is None and torch.get_float32_matmul_precision() != "highest":
        precision = "fp32 (tf32)"  # as to-gpu-bench names it
    return f"device: {device}, {precision}, {'CPU ' if device.type != 'cpu' else ''}{threads.summary()}"
