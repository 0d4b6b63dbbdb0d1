"""IDX files (the MNIST format), gzip or plain, read in place into a uint8 tensor with every count checked.

An IDX file is a 4-byte magic (0, 0, type, ndim), ndim big-endian uint32 sizes, then the values. Only
unsigned bytes (type 0x08) occur in MNIST-style data. The header's sizes must account for the payload
exactly: a truncated download or a file cut short on copying is an error naming the file, never a tensor
of the wrong shape or a traceback deep inside torch.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from torchtools.core.errors import UserError
from torchtools.data.compressed import read_bytes

UBYTE = 0x08
TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float",
              0x0E: "double"}
WHAT = {1: "labels", 3: "images"}  # what MNIST-style files of each rank hold, for the messages


def read_idx(path: Path, *, ndim: int | None = None) -> Tensor:
    """The values of an IDX file as a uint8 tensor of the header's shape; `ndim` is the rank expected."""
    path = Path(path)
    data = read_bytes(path)
    if not data:
        raise UserError(f"{path} is empty (0 bytes): delete it and fetch it again")
    if len(data) < 4:
        raise UserError(f"{path} is not an IDX file: {len(data)} byte(s), too short for its header")
    zero1, zero2, type_code, rank = data[:4]
    if zero1 or zero2 or rank == 0:
        raise UserError(f"{path} is not an IDX file: it starts with bytes {data[:4].hex(' ')}, not 00 00 08 0N")
    if type_code != UBYTE:
        kind = TYPE_NAMES.get(type_code, f"unknown type 0x{type_code:02X}")
        raise UserError(f"{path} holds IDX values of type {kind}; MNIST-style data is unsigned bytes (0x08)")
    if ndim is not None and rank != ndim:
        raise UserError(f"{path} holds a {rank}-dimensional IDX array where {WHAT.get(ndim, 'data')} are "
                        f"{ndim}-dimensional")
    header_size = 4 + 4 * rank
    if len(data) < header_size:
        raise UserError(f"{path} is truncated: {len(data)} bytes, less than its {header_size}-byte header")
    shape = struct.unpack(f">{rank}I", data[4:header_size])
    _check_payload(path, shape, len(data) - header_size)
    # A copy: torch wants writable memory, and the bytes object is read-only.
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy())


def _check_payload(path: Path, shape: tuple[int, ...], held: int) -> None:
    wanted = math.prod(shape)
    if held != wanted:
        sizes = " x ".join(str(size) for size in shape)
        what = WHAT.get(len(shape), "data")
        raise UserError(f"{path}: the header says {sizes} = {wanted:,} bytes of {what}, the file holds {held:,}")
