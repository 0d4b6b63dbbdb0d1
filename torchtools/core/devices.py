"""The one device resolver: `--device auto|cpu|cuda|cuda:N|mps` -> a torch.device."""

from __future__ import annotations

import re

import torch

from torchtools.core.errors import UserError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(name: str) -> torch.device:
    """Auto picks CUDA, then MPS, then CPU; an explicit device that is absent is an error, never a fallback."""
    name = name.strip().lower()
    if not _DEVICE_PATTERN.match(name):
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} asked for, but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise UserError(f"device {name!r} asked for, but this machine has {count} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' asked for, but MPS is not available on this machine")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision autocast should use on this device, or None where it does not pay off.

    CUDA: bf16 where the GPU has it (no loss scaling needed), else fp16. CPU: bf16 only where the
    processor has native bf16 matmuls (AMX / AVX512-BF16); elsewhere it is emulated and slower than fp32.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        flags = _cpu_flags()
        if "amx_bf16" in flags or "avx512_bf16" in flags:
            return torch.bfloat16
    return None


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The processor's model name (for benchmark reports: figures only compare on the same CPU)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
