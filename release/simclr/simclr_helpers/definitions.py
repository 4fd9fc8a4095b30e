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
import re
import symtable
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


# --- which cells the grader defines ---------------------------------------------------------------------

# The label of a cell of helpers (see :func:`graded_cells`); the five answer cells are labelled by their names.
HELPER_LABEL = "cell {number} (`{name}`)"
HELPER_PREFIX = "cell "
MAX_HELPER_CELLS = 32


def without_magics(source: str) -> str:
    """IPython line magics and shell escapes (``%...``, ``!...``) have no meaning outside a kernel."""
    return re.sub(r"(?m)^[ \t]*[%!].*$", "", source)


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _nbgrader(cell: dict) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(without_magics(source))
    except (SyntaxError, ValueError):
        return None


def _binds(statement: ast.stmt) -> list[str]:
    """The names a top-level definition binds (imports, ``def``, ``class``, assignments to names); [] otherwise."""
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return [alias.asname or alias.name.split(".")[0] for alias in statement.names if alias.name != "*"]
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        names = []
        for target in targets:
            elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
            names += [e.id for e in elements if isinstance(e, ast.Name)]
        return names
    return []


def _global_uses(source: str) -> set[str]:
    """The global names a piece of code reads (in functions, class bodies and at the top level)."""
    try:
        table = symtable.symtable(source, "cell", "exec")
    except (SyntaxError, ValueError):
        return set()
    used, tables = set(), [table]
    while tables:
        current = tables.pop()
        used.update(s.get_name() for s in current.get_symbols() if s.is_referenced() and s.is_global())
        tables += current.get_children()
    return used


def _defines(tree: ast.Module | None, name: str) -> bool:
    return tree is not None and any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign))
                                    and name in _binds(s) for s in tree.body)


def _first_line(statement: ast.stmt) -> int:
    decorators = getattr(statement, "decorator_list", [])
    return min([statement.lineno] + [d.lineno for d in decorators])


def answer_indices(cells: list[dict], components: tuple[str, ...]) -> dict[int, str]:
    """Which code cell holds each component: its nbgrader grade_id, else the last cell (not a test cell) that
    defines it at the top level."""
    found: dict[int, str] = {}
    code = [(i, c) for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    trees = {i: _parse(_source(c)) for i, c in code}
    for component in components:
        by_id = [i for i, c in code if _nbgrader(c).get("grade_id") == component]
        defining = [i for i, c in code if not _nbgrader(c).get("grade") and _defines(trees[i], component)]
        index = by_id[0] if by_id else (defining[-1] if defining else None)
        if index is not None:
            found[index] = component
    return found


def helper_cells(cells: list[dict], answers: dict[int, str], components: tuple[str, ...]) -> list[tuple[str, str]]:
    """The definitions of the student's other code cells that the answer cells need, as (label, source) cells.

    A name an answer cell (or a helper it needs) reads and does not define itself is taken from the last top-level
    definition of that name (import, ``def``, ``class``, assignment) in a code cell that is neither an answer cell
    nor a test cell; the names section 0 imports, the builtins and the five graded names never are (those come
    from the answer cells only). Each cell keeps only those statements, at their own line numbers."""
    given = set(dir(builtins)) | {name for s in ast.parse(NOTEBOOK_IMPORTS).body for name in _binds(s)} | set(components)
    bindings: dict[str, tuple[int, ast.stmt]] = {}
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code" or index in answers or _nbgrader(cell).get("grade"):
            continue
        tree = _parse(_source(cell))
        for statement in tree.body if tree is not None else []:
            for name in _binds(statement):
                bindings[name] = (index, statement)
    defined = {name for i in answers for s in (_parse(_source(cells[i])) or ast.Module(body=[])).body
               for name in _binds(s)}
    wanted = [name for i in answers for name in _global_uses(without_magics(_source(cells[i])))]
    chosen: dict[int, dict[int, ast.stmt]] = {}
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen or name in given or name in defined or name not in bindings:
            continue
        seen.add(name)
        index, statement = bindings[name]
        chosen.setdefault(index, {})[id(statement)] = statement
        wanted += _global_uses(ast.unparse(statement))
    result = []
    for number, index in enumerate(sorted(chosen)):
        lines = without_magics(_source(cells[index])).splitlines()
        keep = [""] * len(lines)
        statements = sorted(chosen[index].values(), key=_first_line)
        for statement in statements:
            for line in range(_first_line(statement) - 1, statement.end_lineno):
                keep[line] = lines[line]
        label = HELPER_LABEL.format(number=index + 1, name=_binds(statements[0])[0][:60])
        if number >= MAX_HELPER_CELLS:   # the grader's limit on cells: the rest join the last one
            previous_label, previous = result.pop()
            result.append((previous_label, previous + "\n" + "\n".join(keep)))
        else:
            result.append((label, "\n".join(keep)))
    return result


def graded_cells(cells: list[dict], components: tuple[str, ...]) -> list[tuple[str, str]]:
    """What the grader defines of a notebook (``cells``: its cells as dicts), in order: the helpers the answer cells
    need from the student's other code cells (:func:`helper_cells`), then the answer cells, in notebook order, so
    that an answer cell's own definitions always win. Magics are removed; the grader runs only definitions."""
    answers = answer_indices(cells, components)
    return helper_cells(cells, answers, components) + [
        (answers[i], without_magics(_source(cells[i]))) for i in sorted(answers)]


def is_helper(label: str) -> bool:
    """Whether a graded cell is one of helpers (always defined by its definitions only)."""
    return label.startswith(HELPER_PREFIX)


def name_error_hint(error: str, left_out: dict[str, list[str]], cell_errors: dict[str, str] | None = None) -> str:
    """What to do about a NameError in ``error``, given the statements the grader left out (by cell) and the cells
    that failed while being defined; "" if ``error`` is no NameError."""
    match = re.search(r"name '(\w+)' is not defined", error)
    if not match:
        return ""
    name = match.group(1)
    lines = [line for lines in left_out.values() for line in lines if re.search(rf"\b{re.escape(name)}\b", line)]
    failed = [f"{label} failed: {why}" for label, why in (cell_errors or {}).items() if is_helper(label)]
    if lines:
        hint = (f"`{name}` is set by a statement the grader does not run (it runs only imports, def, class and "
                f"simple values): {'; '.join(lines)}. Make it a definition, or compute it inside the function")
    else:
        hint = (f"no code cell defines `{name}` at its top level with def, class, import or a simple value: "
                "define it so (in any code cell), or inside the function that uses it")
    return hint + ("; " + "; ".join(failed) if failed else "")
