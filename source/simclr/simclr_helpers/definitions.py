"""What the grader takes from an answer cell: its definitions, and nothing else of it runs.

``define(source, namespace)`` runs the cell's imports, ``def`` and ``class`` statements and assignments of
simple values (numbers, strings, tensors from ``torch.tensor``, layers from ``nn``, transforms, and tuples, lists
and dicts of those). Every other top-level statement (a print, a loop, a call of your own function, a change to
another module) is left out, and so is any definition whose decorator, default value or base class would run
code of yours while it is being defined. So the grader can call your functions in a process where nothing you
wrote has run yet: what the checks see is what your functions do when they are called.
"""
from __future__ import annotations

import __future__
import ast
import builtins
import math
import types
from typing import Any

import numpy as np
import torch
from torch import nn

Namespace = dict[str, Any]

# What section 0 of the notebook imports: the names an answer cell may use without importing them itself.
NOTEBOOK_IMPORTS = """
import copy
import math
import os
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms
import simclr_helpers as lab
"""

LIBRARIES = ("torch", "torchvision", "numpy", "math")
BUILTIN_TYPES = (int, float, bool, str, bytes, tuple, list, dict, set, frozenset, range, slice, complex)
FACTORIES = {torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.full, torch.empty, torch.arange,
             torch.linspace, torch.eye, torch.randn, torch.rand, torch.device, torch.Generator,
             torch.cuda.is_available, torch.backends.mps.is_available,
             np.array, np.asarray, np.zeros, np.ones, np.arange, np.linspace}
CONTEXT_DECORATORS = (torch.no_grad, torch.inference_mode, torch.enable_grad)
CLASS_DECORATORS = ("staticmethod", "classmethod", "property")
# A class that defines this runs it when another class of the cell subclasses it.
RUNS_ON_SUBCLASSING = ("__init_subclass__",)
FUTURE_ANNOTATIONS = __future__.annotations.compiler_flag


class NotADefinition(Exception):
    """Why a statement is not run: it (or an expression in it) would run code while being defined."""


def _library_object(value: Any) -> bool:
    """A module, class, function or object of torch, torchvision, numpy or math (not of the student's)."""
    if isinstance(value, types.ModuleType):
        name = value.__name__
    elif isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        name = getattr(value, "__module__", None)
    else:
        name = type(value).__module__
    return isinstance(name, str) and name.split(".")[0] in LIBRARIES


def _allowed_callable(value: Any) -> bool:
    """Constructors and factories that build a value without calling anything they are given."""
    if any(value is t for t in BUILTIN_TYPES) or any(value is f for f in FACTORIES):
        return True
    if isinstance(value, type):
        module = value.__module__ or ""
        return (issubclass(value, nn.Module) and module.startswith("torch.")) or module.startswith("torchvision.transforms")
    return isinstance(value, types.BuiltinFunctionType) and getattr(math, value.__name__, None) is value


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id] + parts[::-1]


def _resolve(parts: list[str], namespace: Namespace) -> Any:
    """The object a dotted name stands for now (dict lookups and attributes of modules and classes only)."""
    if parts[0] in namespace:
        value = namespace[parts[0]]
    elif hasattr(builtins, parts[0]):
        value = getattr(builtins, parts[0])
    else:
        raise NotADefinition(f"{parts[0]} is not defined yet")
    for attribute in parts[1:]:
        if not isinstance(value, (types.ModuleType, type)):
            raise NotADefinition(f"{'.'.join(parts)}: only attributes of modules and classes")
        value = getattr(value, attribute)
    return value


def _check_value(node: ast.AST, namespace: Namespace | None) -> None:
    """Raise unless evaluating ``node`` runs no code of the student's.

    ``namespace`` None (a class body, whose names are not known here): no calls at all. Otherwise a call must be
    of an allowed constructor, and no function or class of the student's may be handed to it.
    """
    if isinstance(node, ast.Constant):
        return
    if isinstance(node, (ast.Name, ast.Attribute)):
        if isinstance(node, ast.Attribute):
            _check_value(node.value, namespace)
        return
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            _check_value(element, namespace)
        return
    if isinstance(node, ast.Starred):
        return _check_value(node.value, namespace)
    if isinstance(node, ast.Dict):
        for part in [k for k in node.keys if k is not None] + node.values:
            _check_value(part, namespace)
        return
    if isinstance(node, ast.UnaryOp):
        return _check_value(node.operand, namespace)
    if isinstance(node, (ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp)):
        for operand in ast.iter_child_nodes(node):
            if not isinstance(operand, (ast.operator, ast.boolop, ast.cmpop)):
                _check_value(operand, namespace)
        return
    if isinstance(node, ast.Lambda):
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            _check_value(default, namespace)
        return
    if isinstance(node, ast.Call):
        if namespace is None:
            raise NotADefinition("a call in a class body")
        parts = _dotted(node.func)
        if parts is None or not _allowed_callable(_resolve(parts, namespace)):
            raise NotADefinition(f"a call of {ast.unparse(node.func)}")
        for argument in node.args + [k.value for k in node.keywords]:
            _check_argument(argument, namespace)
        return
    raise NotADefinition(f"{type(node).__name__} is not a simple value")


def _check_argument(node: ast.AST, namespace: Namespace) -> None:
    """An argument of an allowed call: a simple value with no function or class of the student's in it."""
    if any(isinstance(n, ast.Lambda) for n in ast.walk(node)):
        raise NotADefinition("a lambda handed to a call")
    _check_value(node, namespace)
    for sub in ast.walk(node):
        parts = _dotted(sub) if isinstance(sub, (ast.Name, ast.Attribute)) else None
        if parts is None:
            continue
        try:
            value = _resolve(parts, namespace)
        except (NotADefinition, AttributeError):
            continue  # evaluating it fails with a NameError or AttributeError, which runs nothing
        if callable(value) and not _library_object(value):
            raise NotADefinition(f"{'.'.join(parts)} handed to a call")


def _check_function(node: ast.FunctionDef | ast.AsyncFunctionDef, namespace: Namespace | None,
                    properties: set[str]) -> None:
    for decorator in node.decorator_list:
        _check_decorator(decorator, namespace, properties)
    arguments = node.args
    for default in arguments.defaults + [d for d in arguments.kw_defaults if d is not None]:
        _check_value(default, namespace)


def _check_decorator(node: ast.AST, namespace: Namespace | None, properties: set[str]) -> None:
    text = ast.unparse(node)
    if namespace is None:  # in a class body
        if isinstance(node, ast.Name) and node.id in CLASS_DECORATORS:
            return
        if isinstance(node, ast.Attribute) and node.attr in ("setter", "getter", "deleter") \
                and isinstance(node.value, ast.Name) and node.value.id in properties:
            return
        raise NotADefinition(f"the decorator @{text}")
    call = node.func if isinstance(node, ast.Call) and not node.args and not node.keywords else node
    parts = _dotted(call)
    value = _resolve(parts, namespace) if parts else None
    if value is None or not (any(value is d for d in CONTEXT_DECORATORS) or
                             (call is node and any(value is getattr(builtins, d) for d in CLASS_DECORATORS))):
        raise NotADefinition(f"the decorator @{text}")


def _class_body(node: ast.ClassDef, left_out: list[str], label: str) -> None:
    """Keep the definitions of a class body (in place); record what is dropped."""
    kept, properties, bound = [], set(), set()
    for statement in node.body:
        try:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if statement.name in RUNS_ON_SUBCLASSING:
                    raise NotADefinition(f"{statement.name} runs when the class is subclassed")
                _check_function(statement, None, properties)
                if any(isinstance(d, ast.Name) and d.id == "property" for d in statement.decorator_list):
                    properties.add(statement.name)
                bound.add(statement.name)
            elif isinstance(statement, ast.ClassDef):
                _check_class_header(statement, None)
                _class_body(statement, left_out, label)
                bound.add(statement.name)
            elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                _check_assignment(statement, None)
                bound.update(t.id for t in _targets(statement))
            elif not (isinstance(statement, ast.Pass) or _is_docstring(statement)):
                raise NotADefinition("not a definition")
            if bound & set(CLASS_DECORATORS):
                raise NotADefinition("it rebinds a decorator's name")
            kept.append(statement)
        except NotADefinition as why:
            left_out.append(_describe(statement, label, why))
    node.body = kept or [ast.Pass()]


def _check_class_header(node: ast.ClassDef, namespace: Namespace | None) -> None:
    if node.keywords:
        raise NotADefinition("class keywords (metaclass=...)")
    for decorator in node.decorator_list:
        raise NotADefinition(f"the class decorator @{ast.unparse(decorator)}")
    for base in node.bases:
        if not isinstance(base, (ast.Name, ast.Attribute)) or _dotted(base) is None:
            raise NotADefinition(f"the base class {ast.unparse(base)}")


def _targets(statement: ast.Assign | ast.AnnAssign) -> list[ast.Name]:
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    names = []
    for target in targets:
        elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        if not all(isinstance(e, ast.Name) for e in elements):
            raise NotADefinition("only names can be assigned")
        names += elements
    return names


def _check_assignment(statement: ast.Assign | ast.AnnAssign, namespace: Namespace | None) -> None:
    _targets(statement)
    if statement.value is not None:
        _check_value(statement.value, namespace)


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _describe(statement: ast.stmt, label: str, why: Exception) -> str:
    first_line = ast.unparse(statement).splitlines()[0] if statement else ""
    return f"{label}, line {statement.lineno}: `{first_line[:70]}` ({why})"


def define(source: str, namespace: Namespace, label: str = "cell") -> list[str]:
    """Run the definitions of ``source`` in ``namespace``; return a line for every statement left out.

    Raises SyntaxError if the cell does not parse. A definition that fails while being made (an import of a
    module that is not installed, a name not defined yet) raises as it would in the notebook.
    """
    left_out: list[str] = []
    for statement in ast.parse(source).body:
        try:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                pass
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                _check_function(statement, namespace, set())
            elif isinstance(statement, ast.ClassDef):
                _check_class_header(statement, namespace)
                _class_body(statement, left_out, label)
            elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                _check_assignment(statement, namespace)
            elif _is_docstring(statement) or isinstance(statement, ast.Pass):
                continue
            else:
                raise NotADefinition("not a definition")
        except NotADefinition as why:
            left_out.append(_describe(statement, label, why))
            continue
        module = ast.Module(body=[statement], type_ignores=[])
        exec(compile(module, f"<{label}>", "exec", flags=FUTURE_ANNOTATIONS, dont_inherit=True), namespace)
    return left_out
