"""Safe expressions for step `when` conditions and `{{ ... }}` task templates.

The text is parsed by Python's parser (mode="eval") and only a whitelisted subset of the tree is
accepted. Evaluation walks that tree itself: no user text is ever compiled or executed, and no
Python attribute is ever read (`a.b` is a key lookup in a mapping), so the worst an expression can
do is fail with an ExpressionError."""

from __future__ import annotations

import ast
import functools
import json
import shlex
from collections.abc import Callable, Mapping
from typing import Any

MAX_LENGTH = 2000
MAX_DEPTH = 50
STEPS = "steps"

# Lower-case spellings of the literals, for authors used to JSON/YAML; they are never variables.
LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
FALSY_STRINGS = frozenset({"", "false", "0", "no", "off", "null", "none"})

_COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_BIN_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod)
_UNARY_OPS = (ast.Not, ast.USub, ast.UAdd)
_FRIENDLY = {
    "Lambda": "lambda",
    "ListComp": "comprehensions",
    "SetComp": "comprehensions",
    "DictComp": "comprehensions",
    "GeneratorExp": "comprehensions",
    "JoinedStr": "f-strings",
    "NamedExpr": "assignment (:=)",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
    "Dict": "mapping literals",
    "Set": "set literals",
    "Starred": "* unpacking",
    "Slice": "slices",
}


class ExpressionError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    return type(value).__name__


def truthy(value: Any) -> bool:
    """Python truthiness, except that strings like "false", "0", "no" and "" (after trimming,
    any case) are false: step outputs are text, and `when: steps.check.output` should work."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSY_STRINGS
    if value is None:
        return False
    if isinstance(value, bool | int | float | list | tuple | Mapping):
        return bool(value)
    return True


def to_text(value: Any) -> str:
    """How a value appears in a rendered template: null as "", booleans as true/false,
    lists and mappings as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError as exc:  # ints beyond Python's digit limit
            raise ExpressionError("number is too large to render") from exc
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _need_str(fn: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"{fn}() needs a string, got {type_name(value)}")
    return value


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            raise ExpressionError(f"cannot look for a {type_name(item)} in a string")
        return item in container
    if isinstance(container, Mapping | list | tuple):
        try:
            return item in container
        except TypeError as exc:
            raise ExpressionError(f"cannot look for a {type_name(item)} in a {type_name(container)}") from exc
    raise ExpressionError(f"'in' needs a string, list or mapping, got {type_name(container)}")


def _fn_len(value: Any) -> int:
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise ExpressionError(f"len() needs a string, list or mapping, got {type_name(value)}")


def _fn_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ExpressionError(f"int() cannot convert a {type_name(value)}")
    try:
        return int(value)
    except (ValueError, OverflowError) as exc:
        raise ExpressionError(f"int() cannot convert {value!r}"[:200]) from exc


def _fn_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ExpressionError(f"float() cannot convert a {type_name(value)}")
    try:
        return float(value)
    except (ValueError, OverflowError) as exc:
        raise ExpressionError(f"float() cannot convert {value!r}"[:200]) from exc


# name -> (number of arguments, implementation)
FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "len": (1, _fn_len),
    "lower": (1, lambda s: _need_str("lower", s).lower()),
    "upper": (1, lambda s: _need_str("upper", s).upper()),
    "trim": (1, lambda s: _need_str("trim", s).strip()),
    "contains": (2, _contains),
    "startswith": (2, lambda s, p: _need_str("startswith", s).startswith(_need_str("startswith", p))),
    "endswith": (2, lambda s, p: _need_str("endswith", s).endswith(_need_str("endswith", p))),
    "int": (1, _fn_int),
    "float": (1, _fn_float),
    "str": (1, to_text),
    "shquote": (1, lambda v: shlex.quote(to_text(v))),
}


class Expression:
    """A checked expression; evaluate() may be called any number of times."""

    __slots__ = ("_body", "names", "step_refs", "text")

    def __init__(self, text: str, body: ast.expr, names: frozenset[str], step_refs: frozenset[str]) -> None:
        self.text = text
        self._body = body
        # Top-level variables the expression reads, e.g. {"steps", "context"}.
        self.names = names
        # Step ids read as steps.X or steps['X'].
        self.step_refs = step_refs

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        try:
            return _evaluate(self._body, variables)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise ExpressionError(str(exc) or type(exc).__name__) from exc

    def test(self, variables: Mapping[str, Any]) -> bool:
        return truthy(self.evaluate(variables))

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


@functools.lru_cache(maxsize=1024)
def compile_expression(text: str) -> Expression:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
    # YAML block scalars keep line breaks, which Python only allows inside brackets.
    source = " ".join(text.splitlines()).strip()
    if not source:
        raise ExpressionError("expression is empty")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"syntax error{where}: {exc.msg}") from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"cannot parse expression: {type(exc).__name__}") from exc
    names: set[str] = set()
    step_refs: set[str] = set()
    _check(tree.body, 1, names, step_refs)
    return Expression(text, tree.body, frozenset(names), frozenset(step_refs))


def _reject(node: ast.AST) -> ExpressionError:
    kind = type(node).__name__
    return ExpressionError(f"{_FRIENDLY.get(kind, kind)} not allowed in expressions")


def _check(node: ast.AST, depth: int, names: set[str], step_refs: set[str]) -> None:
    if depth > MAX_DEPTH:
        raise ExpressionError(f"expression is nested more than {MAX_DEPTH} levels deep")

    def child(sub: ast.AST) -> None:
        _check(sub, depth + 1, names, step_refs)

    match node:
        case ast.Constant(value=value):
            if value is not None and not isinstance(value, str | int | float):
                raise ExpressionError(f"{type(value).__name__} literals not allowed in expressions")
        case ast.Name(id=name):
            if name.startswith("__"):
                raise ExpressionError(f"name {name!r} not allowed (names may not start with '__')")
            if name not in LITERALS:
                names.add(name)
        case ast.Attribute(value=value, attr=attr):
            if attr.startswith("__"):
                raise ExpressionError(f"attribute {attr!r} not allowed (names may not start with '__')")
            if isinstance(value, ast.Name) and value.id == STEPS:
                step_refs.add(attr)
            child(value)
        case ast.Subscript(value=value, slice=key):
            if isinstance(key, ast.Slice):
                raise _reject(key)
            if isinstance(value, ast.Name) and value.id == STEPS:
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    raise ExpressionError("steps[...] needs a literal step id, e.g. steps['build']")
                step_refs.add(key.value)
            child(value)
            child(key)
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            for elt in elts:
                child(elt)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            for op in ops:
                if not isinstance(op, _COMPARE_OPS):
                    hint = " (use == or !=)" if isinstance(op, ast.Is | ast.IsNot) else ""
                    raise ExpressionError(f"comparison {type(op).__name__} not allowed{hint}")
            child(left)
            for comparator in comparators:
                child(comparator)
        case ast.BoolOp(values=values):
            for value in values:
                child(value)
        case ast.UnaryOp(op=op, operand=operand):
            if not isinstance(op, _UNARY_OPS):
                raise ExpressionError(f"operator {type(op).__name__} not allowed")
            child(operand)
        case ast.BinOp(left=left, op=op, right=right):
            if not isinstance(op, _BIN_OPS):
                raise ExpressionError(f"operator {type(op).__name__} not allowed (use + - * / %)")
            child(left)
            child(right)
        case ast.IfExp(test=test, body=body, orelse=orelse):
            child(test)
            child(body)
            child(orelse)
        case ast.Call(func=func, args=args, keywords=keywords):
            if not (isinstance(func, ast.Name) and func.id in FUNCTIONS):
                allowed = ", ".join(sorted(FUNCTIONS))
                raise ExpressionError(f"only these functions can be called: {allowed}")
            if keywords:
                raise ExpressionError(f"{func.id}() takes no keyword arguments")
            arity = FUNCTIONS[func.id][0]
            if len(args) != arity:
                raise ExpressionError(f"{func.id}() takes {arity} argument{'s' if arity > 1 else ''}")
            for arg in args:
                if isinstance(arg, ast.Starred):
                    raise _reject(arg)
                child(arg)
        case _:
            raise _reject(node)


def _describe(node: ast.expr) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 80 else text[:77] + "..."


def _lookup(base: Any, key: Any, node: ast.expr, *, attribute: bool = False) -> Any:
    if isinstance(base, Mapping):
        try:
            return base[key]
        except KeyError:
            keys = sorted(str(k) for k in base)
            known = f" (keys: {', '.join(keys[:10])}{', ...' if len(keys) > 10 else ''})" if keys else ""
            raise ExpressionError(f"{_describe(node)} has no key {key!r}{known}") from None
        except TypeError:
            raise ExpressionError(f"{type_name(key)} cannot be a key of {_describe(node)}") from None
    if isinstance(base, list | tuple | str) and not attribute:
        if isinstance(key, bool) or not isinstance(key, int):
            raise ExpressionError(f"{_describe(node)} is a {type_name(base)}: index it with a whole number")
        try:
            return base[key]
        except IndexError:
            raise ExpressionError(f"{_describe(node)} has no index {key} (length {len(base)})") from None
    raise ExpressionError(f"cannot look up {key!r} in {_describe(node)}: it is a {type_name(base)}")


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.Eq):
        return bool(left == right)
    if isinstance(op, ast.NotEq):
        return bool(left != right)
    if isinstance(op, ast.In):
        return _contains(right, left)
    if isinstance(op, ast.NotIn):
        return not _contains(right, left)
    if not (_is_number(left) and _is_number(right)) and not (
        isinstance(left, str) and isinstance(right, str)
    ):
        raise ExpressionError(f"cannot order a {type_name(left)} and a {type_name(right)}")
    if isinstance(op, ast.Lt):
        return bool(left < right)
    if isinstance(op, ast.LtE):
        return bool(left <= right)
    if isinstance(op, ast.Gt):
        return bool(left > right)
    return bool(left >= right)


def _arithmetic(op: ast.operator, left: Any, right: Any) -> Any:
    if isinstance(op, ast.Add):
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(left, list) and isinstance(right, list):
            return left + right
    if not (_is_number(left) and _is_number(right)):
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}[type(op)]
        raise ExpressionError(f"cannot compute {type_name(left)} {symbol} {type_name(right)}")
    try:
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return left * right
        if isinstance(op, ast.Div):
            return left / right
        return left % right
    except ZeroDivisionError:
        raise ExpressionError("division by zero") from None
    except OverflowError:
        raise ExpressionError("number too large") from None


def _evaluate(node: ast.expr, env: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            if name in LITERALS:
                return LITERALS[name]
            try:
                return env[name]
            except KeyError:
                raise ExpressionError(f"unknown variable {name!r}") from None
        case ast.Attribute(value=value, attr=attr):
            return _lookup(_evaluate(value, env), attr, value, attribute=True)
        case ast.Subscript(value=value, slice=key):
            return _lookup(_evaluate(value, env), _evaluate(key, env), value)
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_evaluate(elt, env) for elt in elts]
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _evaluate(left, env)
            for op, comparator in zip(ops, comparators, strict=True):
                right = _evaluate(comparator, env)
                if not _compare(op, current, right):
                    return False
                current = right
            return True
        case ast.BoolOp(op=op, values=values):
            # Like Python: short-circuits and yields the deciding operand.
            result: Any = None
            for value in values:
                result = _evaluate(value, env)
                if truthy(result) == isinstance(op, ast.Or):
                    return result
            return result
        case ast.UnaryOp(op=op, operand=operand):
            value = _evaluate(operand, env)
            if isinstance(op, ast.Not):
                return not truthy(value)
            if not _is_number(value):
                raise ExpressionError(f"unary minus/plus needs a number, got {type_name(value)}")
            return -value if isinstance(op, ast.USub) else value
        case ast.BinOp(left=left, op=op, right=right):
            return _arithmetic(op, _evaluate(left, env), _evaluate(right, env))
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _evaluate(body if truthy(_evaluate(test, env)) else orelse, env)
        case ast.Call(func=ast.Name(id=name), args=args):
            return FUNCTIONS[name][1](*(_evaluate(arg, env) for arg in args))
    # compile_expression only lets the node types above through.
    raise ExpressionError(f"unexpected {type(node).__name__}")
