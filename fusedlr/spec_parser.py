"""Parses a schedule written in the constructor syntax of ``fusedlr.schedules``.

``parse_schedule("SequentialLR([LinearLR(0.01, 1.0, 500), CosineAnnealingLR(9500)], [500])")``
builds the same spec as the Python expression, without ``eval``: the text is parsed
with :mod:`ast` and only these nodes are accepted:

- calls of schedule classes exported by ``fusedlr.schedules`` (positional and keyword
  arguments, no ``*``/``**``);
- int, float, str, bool and None literals, with unary ``-``/``+`` on numbers;
- lists and tuples of the above.

Anything else (names, attributes, operators, lambdas, comprehensions, ...) is
rejected. Every error is a ``ValueError`` with a one-line message naming the problem
and its column.
"""

from __future__ import annotations

import ast
import difflib

from fusedlr import schedules as _schedules
from fusedlr.schedules import Schedule

MAX_SPEC_CHARS = 100_000
_LITERALS = (int, float, str, bool, type(None))


def schedule_names() -> dict[str, type]:
    """The schedule classes a spec may call: those ``fusedlr.schedules`` exports."""
    names = {}
    for name in getattr(_schedules, "__all__", dir(_schedules)):
        obj = getattr(_schedules, name, None)
        if isinstance(obj, type) and issubclass(obj, Schedule) and obj is not Schedule:
            names[name] = obj
    return names


class _SpecError(Exception):
    def __init__(self, message: str, node: ast.AST | None = None):
        col = getattr(node, "col_offset", None)
        super().__init__(f"{message} (column {col + 1})" if col is not None else message)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def parse_schedule(text: str) -> Schedule:
    """Builds a schedule spec from its constructor syntax; ``ValueError`` if it is not one.

    >>> parse_schedule("StepLR(step_size=2, gamma=0.5)").values(4).tolist()
    [1.0, 1.0, 0.5, 0.5]
    >>> parse_schedule("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: bad schedule spec: unknown schedule '__import__' (column 1)
    """
    if not isinstance(text, str):
        raise ValueError(f"bad schedule spec: expected a string, got {type(text).__name__}")
    if len(text) > MAX_SPEC_CHARS:
        raise ValueError(f"bad schedule spec: longer than {MAX_SPEC_CHARS} characters")
    source = text.strip()
    if not source:
        raise ValueError("bad schedule spec: empty")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        where = f" (column {e.offset})" if e.offset else ""
        raise ValueError(f"bad schedule spec: invalid syntax{where}: {_one_line(e.msg)}") from None
    except (RecursionError, MemoryError):
        raise ValueError("bad schedule spec: nested too deeply") from None
    try:
        result = _Builder(schedule_names()).build(tree.body)
    except _SpecError as e:
        raise ValueError(f"bad schedule spec: {_one_line(e)}") from None
    except RecursionError:
        raise ValueError("bad schedule spec: nested too deeply") from None
    if not isinstance(result, Schedule):
        raise ValueError(
            "bad schedule spec: expected a schedule such as CosineAnnealingLR(100), got "
            f"{_describe(result)}"
        )
    return result


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__}"
    return f"the literal {value!r}"


class _Builder:
    def __init__(self, names: dict[str, type]):
        self.names = names

    def build(self, node: ast.AST):
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, _LITERALS):
                return node.value
            raise _SpecError(f"literal {node.value!r} is not allowed", node)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.build(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.build(node.operand)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _SpecError("unary minus/plus applies to numbers only", node)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                raise _SpecError(f"{node.id} must be called, e.g. {node.id}(...)", node)
            raise _SpecError(f"unknown name {node.id!r}{self._hint(node.id)}", node)
        if isinstance(node, (ast.BinOp, ast.BoolOp, ast.Compare)):
            raise _SpecError("arithmetic and operators are not allowed; write the number", node)
        if isinstance(node, ast.Starred):
            raise _SpecError("*arguments are not allowed", node)
        raise _SpecError(f"{type(node).__name__.lower()} expressions are not allowed", node)

    def _hint(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self.names), n=1)
        return f"; did you mean {close[0]}?" if close else ""

    def call(self, node: ast.Call):
        func = node.func
        if not isinstance(func, ast.Name):
            raise _SpecError(
                "only schedule names can be called (write CosineAnnealingLR(...), not a.b(...))",
                node,
            )
        cls = self.names.get(func.id)
        if cls is None:
            raise _SpecError(f"unknown schedule {func.id!r}{self._hint(func.id)}", node)
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise _SpecError("*arguments are not allowed", a)
            args.append(self.build(a))
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise _SpecError("**arguments are not allowed", kw.value)
            if kw.arg in kwargs:
                raise _SpecError(f"{func.id}: argument {kw.arg!r} given twice", kw.value)
            kwargs[kw.arg] = self.build(kw.value)
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError, OverflowError) as e:
            message = _one_line(e)
            message = message.replace("__init__()", func.id).replace(f"{cls.__name__}.{func.id}",
                                                                     func.id)
            if not message.startswith(func.id):
                message = f"{func.id}: {message}"
            raise _SpecError(message, node) from None
