"""Plain data as bytes: what crosses between the grader and a process that runs your code.

A message is numbers, strings, booleans, None, lists, dicts with string keys, and tensors. It is written as a
small JSON header (the structure, and each tensor's dtype and shape) followed by the tensors' raw bytes. No
Python object is ever rebuilt from it, every tensor comes back contiguous and owned, and :func:`decode` checks
the sizes against the bytes it was given before it allocates anything, so a message of a few bytes cannot stand
for gigabytes, and a malformed one is refused with :class:`NotPlainData`.
"""
from __future__ import annotations

import json
import math
import select
import socket
import struct
import time
from typing import Any, Callable, Iterable

import torch

MAGIC = b"SIMCLR-WIRE-1\n"
DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16, torch.int8,
    torch.uint8, torch.bool)}
TENSOR_KEY = "__tensor__"
MAX_HEADER = 4 * 2**20
MAX_NODES = 200_000
MAX_DIMS = 8
MAX_TENSORS = 4096


class NotPlainData(ValueError):
    """Bytes that are not a well-formed message within the given limits."""


class ChannelClosed(EOFError):
    """The other side closed the channel (or died) before a whole message arrived."""


class MessageTimeout(TimeoutError):
    """A whole message did not arrive before the deadline."""


def encode(data: Any) -> bytes:
    """``data`` as bytes; TypeError for anything that is not plain data (tensors are copied to the CPU)."""
    tensors: list[torch.Tensor] = []

    def tree(value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, torch.Tensor):
            tensor = torch.Tensor.as_subclass(value, torch.Tensor).detach().to("cpu").contiguous()
            if str(tensor.dtype).removeprefix("torch.") not in DTYPES:
                raise TypeError(f"tensors of dtype {tensor.dtype} cannot be sent")
            tensors.append(tensor)
            return {TENSOR_KEY: len(tensors) - 1}
        if isinstance(value, (list, tuple)):
            return [tree(item) for item in value]
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value) or TENSOR_KEY in value:
                raise TypeError("only dicts with string keys can be sent")
            return {key: tree(item) for key, item in value.items()}
        raise TypeError(f"a {type(value).__name__} cannot be sent, only plain data")

    structure = tree(data)
    header = json.dumps({"data": structure, "tensors": [[str(t.dtype).removeprefix("torch."), list(t.shape)]
                                                         for t in tensors]}).encode()
    parts = [MAGIC, struct.pack("<Q", len(header)), header]
    parts += [t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"" for t in tensors]
    return b"".join(parts)


def decode(raw: bytes, max_tensor_bytes: int | None = None) -> Any:
    """The data ``raw`` holds; NotPlainData if it is malformed, or if its tensors need more than
    ``max_tensor_bytes`` (default: what ``raw`` holds, which they must match exactly anyway)."""
    view = memoryview(raw)
    if bytes(view[:len(MAGIC)]) != MAGIC or len(view) < len(MAGIC) + 8:
        raise NotPlainData("not a message of this format")
    (header_size,) = struct.unpack("<Q", view[len(MAGIC):len(MAGIC) + 8])
    start = len(MAGIC) + 8
    if header_size > min(MAX_HEADER, len(view) - start):
        raise NotPlainData(f"a header of {header_size} bytes")
    try:
        header = json.loads(bytes(view[start:start + header_size]))
    except (ValueError, RecursionError) as error:
        raise NotPlainData(f"an unreadable header ({type(error).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
        raise NotPlainData("a header without its tensor list")
    if len(header["tensors"]) > MAX_TENSORS:
        raise NotPlainData(f"{len(header['tensors'])} tensors (at most {MAX_TENSORS})")
    specs = [_tensor_spec(spec) for spec in header["tensors"]]
    sizes = [math.prod(shape) * _itemsize(dtype) for dtype, shape in specs]
    payload = view[start + header_size:]
    limit = len(payload) if max_tensor_bytes is None else min(len(payload), max_tensor_bytes)
    if sum(sizes) != len(payload) or sum(sizes) > limit:
        raise NotPlainData(f"tensors of {sum(sizes)} bytes in a payload of {len(payload)} (limit {limit})")
    tensors, offset = [], 0
    for (dtype, shape), size in zip(specs, sizes):
        chunk = bytearray(payload[offset:offset + size])
        offset += size
        try:
            tensors.append(_tensor(chunk, dtype, shape))
        except (RuntimeError, ValueError) as error:
            raise NotPlainData(f"a tensor torch cannot make ({str(error)[:80]})") from None
    budget = [MAX_NODES]
    return _rebuild(header.get("data"), tensors, budget, 0)


def _tensor(chunk: bytearray, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if not chunk:
        return torch.empty(shape, dtype=dtype)
    flat = torch.frombuffer(chunk, dtype=torch.uint8)
    if dtype is torch.bool:   # any byte other than 0 or 1 would be an invalid bool
        return (flat != 0).reshape(shape)
    return flat.view(dtype).reshape(shape)


ITEMSIZE = {dtype: torch.empty(0, dtype=dtype).element_size() for dtype in DTYPES.values()}


def _itemsize(dtype: torch.dtype) -> int:
    return ITEMSIZE[dtype]


def _tensor_spec(spec: Any) -> tuple[torch.dtype, tuple[int, ...]]:
    # Every dimension counted as at least 1: a tensor with a zero dimension must still have a shape whose
    # strides fit in 64 bits.
    if not (isinstance(spec, list) and len(spec) == 2 and spec[0] in DTYPES and isinstance(spec[1], list)
            and len(spec[1]) <= MAX_DIMS and all(type(n) is int and 0 <= n < 2**40 for n in spec[1])
            and math.prod(max(n, 1) for n in spec[1]) < 2**40):
        raise NotPlainData(f"a malformed tensor description {str(spec)[:80]}")
    return DTYPES[spec[0]], tuple(spec[1])


def _rebuild(node: Any, tensors: list[torch.Tensor], budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0 or depth > 32:
        raise NotPlainData("a structure too large or too deep")
    if isinstance(node, list):
        return [_rebuild(item, tensors, budget, depth + 1) for item in node]
    if isinstance(node, dict):
        if set(node) == {TENSOR_KEY}:
            index = node[TENSOR_KEY]
            if type(index) is not int or not 0 <= index < len(tensors):
                raise NotPlainData("a reference to a tensor that is not there")
            return tensors[index]
        return {_text(key): _rebuild(item, tensors, budget, depth + 1) for key, item in node.items()}
    return _text(node) if isinstance(node, str) else node


def _text(value: str) -> str:
    """A string that is valid UTF-8 (JSON lets a lone surrogate through, which nothing can write out later)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NotPlainData("a string that is not valid Unicode") from None
    return value


def roundtrip(data: Any) -> Any:
    """What crosses a process boundary: ``data`` encoded and decoded again (plain copies)."""
    return decode(encode(data))


# --- whole messages over a stream socket: an 8-byte length, then the message ---------------------------------

class Deadline:
    """How long to wait for the other side: until ``at`` (a ``time.monotonic()`` value), calling ``watch`` every
    ``every_s`` seconds while nothing arrives (it may raise to stop the wait early, e.g. at a CPU-time limit)."""

    def __init__(self, at: float, watch: Callable[[], None] | None = None, every_s: float = 0.1):
        self.at, self.watch, self.every_s = at, watch, every_s

    def wait(self, poller: select.poll) -> bool:
        """Whether ``poller`` became ready before the deadline."""
        while True:
            remaining = self.at - time.monotonic()
            if remaining <= 0:
                return False
            if poller.poll(1000 * (min(remaining, self.every_s) if self.watch else remaining)):
                return True
            if self.watch:
                self.watch()


def _deadline(when: float | Deadline | None) -> Deadline | None:
    return Deadline(when) if isinstance(when, (int, float)) else when


def send(sock: socket.socket, data: Any, fds: Iterable[int] = (), deadline: float | Deadline | None = None) -> None:
    """Send ``data`` as one message, then the file descriptors ``fds`` (SCM_RIGHTS, with one byte);
    MessageTimeout if the other side has not taken it all by ``deadline`` (None waits for ever)."""
    message, deadline = encode(data), _deadline(deadline)
    _write_all(sock, struct.pack("<Q", len(message)) + message, deadline)
    fds = list(fds)
    if fds:
        _wait_writable(sock, deadline, "the file descriptors")
        socket.send_fds(sock, [b"F"], fds)


def _wait_writable(sock: socket.socket, deadline: Deadline | None, what: str) -> None:
    if deadline is None:
        return
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    if not deadline.wait(poller):
        raise MessageTimeout(f"{what} not taken by the deadline")


def _write_all(sock: socket.socket, data: bytes, deadline: Deadline | None) -> None:
    if deadline is None:
        sock.sendall(data)
        return
    view, sent = memoryview(data), 0
    while sent < len(view):
        _wait_writable(sock, deadline, f"{sent} of {len(view)} bytes taken;")
        try:
            sent += sock.send(view[sent:], socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue


def receive_fds(sock: socket.socket, count: int) -> list[int]:
    """The file descriptors sent right after the last message."""
    _, fds, _, _ = socket.recv_fds(sock, 1, count)
    return fds


def receive(sock: socket.socket, max_bytes: int, deadline: float | Deadline | None = None,
            max_tensor_bytes: int | None = None) -> Any:
    """The next message: ChannelClosed at the end of the stream, MessageTimeout if it is not whole by
    ``deadline`` (a ``time.monotonic()`` value or a ``Deadline``; None waits for ever), NotPlainData if it is
    longer than ``max_bytes`` or malformed."""
    deadline = _deadline(deadline)
    (size,) = struct.unpack("<Q", _read_exactly(sock, 8, deadline))
    if size > max_bytes:
        raise NotPlainData(f"a message of {size} bytes (the limit is {max_bytes})")
    return decode(_read_exactly(sock, size, deadline), max_tensor_bytes)


def _read_exactly(sock: socket.socket, size: int, deadline: Deadline | None) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while got < size:
        if deadline is not None and not deadline.wait(poller):
            raise MessageTimeout(f"{got} of {size} bytes by the deadline")
        try:
            count = sock.recv_into(view[got:], size - got)
        except (ConnectionResetError, BrokenPipeError):
            count = 0
        if count == 0:
            raise ChannelClosed
        got += count
    return bytes(buffer)
