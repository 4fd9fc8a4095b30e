"""Module weights in memory the grader owns: how the grader reads what a student's call left in them.

For an op that hands modules to student code (``train_epoch``, ``linear_probe``), the grader writes the modules'
starting state into a sealed memfd (no one can shrink or grow it), sends the descriptor with the request, and the
student process puts the modules' parameters and buffers there (``worker._SharedMemory``). After the reply the
grader copies the memory once and reads each tensor at the place, dtype and shape it chose itself: whatever the
student process says about the modules, the grader judges what is in that memory.
"""
from __future__ import annotations

import fcntl
import os

import torch

ALIGN = 64
Layout = dict[str, list[list]]   # result key -> [[name, dtype, shape, offset], ...]


class SharedState:
    """The memfd for one op call: ``layout`` and ``size`` go in the request, ``fd`` goes with it."""

    def __init__(self, states: dict[str, dict[str, torch.Tensor]]):
        self.layout: Layout = {}
        offset = 0
        for key, state in states.items():
            entries = []
            for name, tensor in state.items():
                entries.append([name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape), offset])
                offset += -(-tensor.numel() * tensor.element_size() // ALIGN) * ALIGN
            self.layout[key] = entries
        self.size = offset
        self.fd = os.memfd_create("simclr-state", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, self.size)
        for key, state in states.items():
            for (name, _dtype, _shape, place), tensor in zip(self.layout[key], state.values()):
                data = tensor.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() \
                    if tensor.numel() else b""
                os.pwrite(self.fd, data, place)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)

    def read(self) -> dict[str, dict[str, torch.Tensor]]:
        """Every module's state as it is in the memory now (one copy, taken at once)."""
        raw = os.pread(self.fd, self.size, 0)
        if len(raw) != self.size:
            raise OSError(f"the shared state holds {len(raw)} of {self.size} bytes")
        states = {}
        for key, entries in self.layout.items():
            state = {}
            for name, dtype, shape, offset in entries:
                dtype = getattr(torch, dtype)
                count = 1
                for n in shape:
                    count *= n
                size = count * torch.empty(0, dtype=dtype).element_size()
                flat = torch.frombuffer(bytearray(raw[offset:offset + size]), dtype=torch.uint8) if size else \
                    torch.empty(0, dtype=torch.uint8)
                state[name] = flat.view(dtype).reshape(shape).clone() if size else torch.empty(shape, dtype=dtype)
            states[key] = state
        return states

    def close(self) -> None:
        os.close(self.fd)
