"""The form of every message a student process may send: checked before the grader computes anything on it.

``simclr_helpers.wire`` already guarantees plain data (contiguous tensors whose bytes were all there); this module
bounds what each op may send back: which keys, tensors of what rank and size, how many items. A reply of another
form fails its check with a message, and the student process is ended.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

Validator = Callable[[Any, str], None]
MiB = 2**20
MAX_REPLY_BYTES = 64 * MiB
MAX_TRAINING_RUN_BYTES = 512 * MiB
MAX_LOSS_ROWS = 256
MAX_LOSS_DIM = 256


class ReplyError(ValueError):
    """A message of the wrong form; the text says where."""


def tensor(max_numel: int, ndim: int | None = None, first: int | None = None) -> Validator:
    def check(value: Any, where: str) -> None:
        if type(value) is not torch.Tensor:
            raise ReplyError(f"{where} must be a tensor, got {type(value).__name__}")
        if value.numel() > max_numel:
            raise ReplyError(f"{where} has {value.numel()} elements (at most {max_numel})")
        if ndim is not None and value.dim() != ndim:
            raise ReplyError(f"{where} has {value.dim()} dimensions, expected {ndim}")
        if first is not None and (value.dim() == 0 or value.shape[0] != first):
            raise ReplyError(f"{where} has shape {tuple(value.shape)}; expected {first} along the first dimension")
    return check


def number(low: float = -math.inf, high: float = math.inf) -> Validator:
    def check(value: Any, where: str) -> None:
        if type(value) not in (int, float):
            raise ReplyError(f"{where} must be a number, got {type(value).__name__}")
        if not (low <= value <= high) and not (type(value) is float and math.isnan(value)):
            raise ReplyError(f"{where} is {value}, outside [{low}, {high}]")
    return check


def text(max_length: int = 2000) -> Validator:
    def check(value: Any, where: str) -> None:
        if type(value) is not str or len(value) > max_length:
            raise ReplyError(f"{where} must be a string of at most {max_length} characters")
    return check


def flag(value: Any, where: str) -> None:
    if type(value) is not bool:
        raise ReplyError(f"{where} must be True or False")


def list_of(item: Validator, max_length: int) -> Validator:
    def check(value: Any, where: str) -> None:
        if type(value) is not list or len(value) > max_length:
            raise ReplyError(f"{where} must be a list of at most {max_length} items")
        for index, element in enumerate(value):
            item(element, f"{where}[{index}]")
    return check


def dict_of(item: Validator, max_length: int) -> Validator:
    def check(value: Any, where: str) -> None:
        if type(value) is not dict or len(value) > max_length:
            raise ReplyError(f"{where} must be a dict of at most {max_length} items")
        for key, element in value.items():
            text(200)(key, f"a key of {where}")
            item(element, f"{where}[{key!r}]")
    return check


def record(fields: dict[str, Validator], optional: tuple[str, ...] = ()) -> Validator:
    def check(value: Any, where: str) -> None:
        if type(value) is not dict:
            raise ReplyError(f"{where} must be a dict, got {type(value).__name__}")
        missing = set(fields) - set(optional) - set(value)
        extra = set(value) - set(fields)
        if missing or extra:
            raise ReplyError(f"{where} has keys {sorted(value)[:10]}; expected {sorted(fields)}")
        for key, validator in fields.items():
            if key in value:
                validator(value[key], f"{where}[{key!r}]")
    return check


def _state(max_entries: int = 256) -> Validator:
    return dict_of(tensor(64 * MiB), max_entries)


BIG = 16 * MiB   # elements: more than any check's input makes a correct function return

# op name -> the form of its result, given the request's inputs
RESULTS: dict[str, Callable[[dict], Validator]] = {
    "augment": lambda inputs: tensor(inputs["n"] * 4 * 128 * 128, ndim=4, first=inputs["n"]),
    "head": lambda inputs: record({
        "output": tensor(BIG), "params": _state(), "grads": _state(), "buffers": _state(),
        "trace": list_of(record({"name": text(200), "kind": text(200), "input": tensor(BIG), "output": tensor(BIG),
                                 "eps": number()}), 256)}),
    "nt_xent": lambda inputs: record({"loss": tensor(BIG), "grad_i": tensor(BIG), "grad_j": tensor(BIG)},
                                     optional=("grad_i", "grad_j")),
    "train_epoch": lambda inputs: record({"returned": list_of(number(), inputs.get("epochs", 1)), "steps": number(),
                                          "seen": tensor(BIG), "encoder": _state(), "head": _state()}),
    "linear_probe": lambda inputs: record({"accuracy": number(), "state": _state(), "training": list_of(flag, 256)}),
    "training_run": lambda inputs: record({"encoder": _state(1024), "losses": list_of(number(), 10_000)}),
}

REPLY = record({"ok": flag, "result": lambda value, where: None, "error": text()}, optional=("result", "error"))
PROGRESS = record({"running": text(200)})
READY = record({"ready": flag, "cell_errors": dict_of(text(1000), 64),
                "left_out": dict_of(list_of(text(1000), 1000), 64)})
COURSE_LOSS = record({"course_loss": record({
    "z_i": tensor(MAX_LOSS_ROWS * MAX_LOSS_DIM, ndim=2), "z_j": tensor(MAX_LOSS_ROWS * MAX_LOSS_DIM, ndim=2),
    "temperature": number(1e-3, 1e3)})})


def max_bytes(op: str) -> int:
    """The most bytes the reply to ``op`` may take."""
    return MAX_TRAINING_RUN_BYTES if op == "training_run" else MAX_REPLY_BYTES


def check_result(op: str, inputs: dict, result: Any) -> None:
    """Raise ReplyError unless ``result`` has the form ``op``'s result may have."""
    RESULTS[op](inputs)(result, f"the result of {op}")


def check_course_loss(message: dict) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The inputs of a request for the course's loss, checked: two float matrices of the same shape, a temperature."""
    COURSE_LOSS(message, "a loss request")
    request = message["course_loss"]
    z_i, z_j = request["z_i"], request["z_j"]
    if z_i.shape != z_j.shape or not z_i.is_floating_point() or not z_j.is_floating_point():
        raise ReplyError(f"a loss request needs two float matrices of one shape, got {tuple(z_i.shape)} "
                         f"{z_i.dtype} and {tuple(z_j.shape)} {z_j.dtype}")
    if z_i.shape[0] > MAX_LOSS_ROWS or z_i.shape[1] > MAX_LOSS_DIM:
        raise ReplyError(f"a loss request of shape {tuple(z_i.shape)} (at most {MAX_LOSS_ROWS} x {MAX_LOSS_DIM})")
    return z_i, z_j, float(request["temperature"])
