"""Judge generated code outside the program: the child computes outputs, the parent decides.

A problem's tests become a ``Suite`` in the parent:

- ``calls``: what the child evaluates, each either a call expression's source (``f([1, 2], 3)``,
  evaluated in the solution's module, so inputs may use its helpers) or a function name with
  recorded arguments. Inputs are no secret; no expected value ever reaches the child.
- ``checks``: kept in the parent. Either the test's own expression with each call replaced by
  its output (``abs(_o0 - 0.5) < 1e-6``), evaluated by ``evaluate`` over plain data only, or an
  expected value (``_o3`` must equal it).

The child runs ``HARNESS``: it executes ``solution.py`` as ``__main__``, evaluates every call and
writes the outputs, as tagged JSON of checked types (None, bool, int, float, complex, str,
bytes, list, tuple, set, frozenset, dict), to the sandbox's result pipe. The parent decodes them
into fresh plain values and runs the checks; ``==`` and ``!=`` there are type-strict (``1`` is
not ``1.0`` nor ``True``, a list is not a tuple), as in EvalPlus. An object with a rigged
``__eq__`` cannot cross the pipe, and what the program prints decides nothing.

Conversion (``from_asserts``): every ``assert`` must compare calls of the candidate with
constants through the operations ``evaluate`` knows, one call per assert. Tests that do not fit
(loops, variables, random inputs, two calls compared with each other, HumanEval's ``for``-loop
checks of problems 32, 38, 44, 50, 53, 151, and 33, whose test compares the candidate with
itself) are converted by **recording** instead: the reference solution runs once in the
sandbox under the original test code (``random`` seeded with 0), every top-level call of the
tested function is recorded with its arguments and output, and those outputs become the expected
values (floats within ``RECORD_TOL``). Caveat, HumanEval/32 (``find_zero``): the original accepts
any root, a recorded suite the reference's root only.

Why one module of ~400 lines: the conversion, the harness the child runs and the parent's checks
are one trust boundary, and its argument (nothing the child sends can pass a check it should fail)
is easier to review in one place.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
from dataclasses import dataclass, field
from typing import Any

from corp.tasks.sandbox import Limits, Result, run_python

RECORD_TOL = 1e-6  # relative and absolute tolerance of floats compared with recorded outputs
_MAX_DEPTH = 64  # nesting of decoded values

# Functions a check may apply to outputs in the parent: pure, on plain data only.
SAFE_CALLS: dict[str, Any] = {
    name: getattr(builtins, name)
    for name in (
        "abs",
        "all",
        "any",
        "bool",
        "float",
        "frozenset",
        "int",
        "len",
        "list",
        "max",
        "min",
        "round",
        "set",
        "sorted",
        "str",
        "sum",
        "tuple",
    )  # fmt: skip
}
SAFE_MATH = {name: getattr(math, name) for name in ("fabs", "isclose", "sqrt", "floor", "ceil", "isnan", "isinf")}


class NotConvertible(ValueError):
    """A test that cannot be judged outside the program as written."""


@dataclass
class Suite:
    """A problem's calls (sent to the child) and checks (kept in the parent)."""

    calls: list[dict[str, Any]]  # {"expr": source} or {"fn": name, "args": encoded, "kwargs": encoded}
    checks: list[tuple[str, Any]] = field(default_factory=list)  # ("expr", ast.Expression) | ("equal", (slot, value))
    recorded: bool = False


# --------------------------------------------------------------------------- child side
HARNESS = r"""
import builtins, json, os, sys, types

def encode(value, depth=0):
    kind = type(value)
    if depth > 64:
        raise ValueError("too deep")
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if value == value and value not in (float("inf"), float("-inf")) else {"float": repr(value)}
    if kind in (list, tuple, set, frozenset):
        return {kind.__name__: [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [repr(value.real), repr(value.imag)]}
    raise TypeError(f"cannot return a {kind.__name__}")

def decode(value):
    if isinstance(value, dict):
        (tag, inner), = value.items()
        if tag == "float":
            return float(inner)
        if tag == "dict":
            return {decode(k): decode(v) for k, v in inner}
        if tag == "bytes":
            return bytes.fromhex(inner)
        if tag == "complex":
            return complex(float(inner[0]), float(inner[1]))
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](decode(v) for v in inner)
    return value

spec = json.load(open("calls.json"))
channel = os.fdopen(spec["fd"], "w")
module = types.ModuleType("__main__")
module.__file__ = os.path.abspath("solution.py")
module.__builtins__ = builtins
sys.modules["__main__"] = module
with open("solution.py", encoding="utf-8") as f:
    code = compile(f.read(), module.__file__, "exec")
exec(code, module.__dict__)
answers = []
if spec.get("record"):
    import random
    random.seed(0)
    for name in spec["record"]["functions"]:
        inner, state = module.__dict__[name], {"depth": 0}
        def recorder(*args, __inner=inner, __name=name, __state=state, **kwargs):
            if __state["depth"]:
                return __inner(*args, **kwargs)
            entry = [__name, encode(args), encode(kwargs)]
            __state["depth"] += 1
            try:
                result = __inner(*args, **kwargs)
            finally:
                __state["depth"] -= 1
            answers.append(entry + [encode(result)])
            return result
        module.__dict__[name] = recorder
    exec(compile(spec["record"]["script"], "test.py", "exec"), module.__dict__)
else:
    for call in spec["calls"]:
        try:
            if "expr" in call:
                value = eval(call["expr"], module.__dict__)
            else:
                value = module.__dict__[call["fn"]](*decode(call["args"]), **decode(call["kwargs"]))
            answers.append(["ok", encode(value)])
        except BaseException as err:
            answers.append(["error", type(err).__name__])
channel.write(json.dumps(answers))
channel.flush()
os._exit(0)
"""


def run_suite(solution: str, suite: Suite, limits: Limits) -> Result:
    """Run ``solution`` and the suite's calls in the sandbox."""
    spec = {"fd": 3, "calls": suite.calls}
    return run_python(HARNESS, limits, {"solution.py": solution, "calls.json": json.dumps(spec)})


# --------------------------------------------------------------------------- parent side
def decode(value: Any, depth: int = 0) -> Any:
    """A JSON value from the child as a fresh plain Python value; ValueError when malformed."""
    if depth > _MAX_DEPTH:
        raise ValueError("too deep")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is not dict or len(value) != 1:
        raise ValueError("malformed value")
    ((tag, inner),) = value.items()
    if tag == "float" and type(inner) is str and inner in ("nan", "inf", "-inf"):
        return float(inner)
    if tag == "bytes" and type(inner) is str:
        return bytes.fromhex(inner)
    if tag == "complex" and type(inner) is list and len(inner) == 2 and all(type(x) is str for x in inner):
        return complex(float(inner[0]), float(inner[1]))
    if type(inner) is not list:
        raise ValueError("malformed value")
    if tag == "dict":
        out = {}
        for pair in inner:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed dict")
            out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
        return out
    kinds = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
    if tag not in kinds:
        raise ValueError(f"unknown tag {tag!r}")
    return kinds[tag](decode(v, depth + 1) for v in inner)


def strict_eq(a: Any, b: Any, tol: float | None = None) -> bool:
    """Equality that also compares types, recursively; floats within ``tol`` when given."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b or (tol is not None and math.isclose(a, b, rel_tol=tol, abs_tol=tol)) or (a != a and b != b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(strict_eq(x, y, tol) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k], tol) for k in a)
    return a == b  # int, str, bool, None, bytes, complex, sets of hashables


_BIN = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
        ast.Pow: lambda a, b: a**b if abs(b) <= 64 else _too_big()}  # fmt: skip
_CMP = {ast.Eq: strict_eq, ast.NotEq: lambda a, b: not strict_eq(a, b), ast.Lt: lambda a, b: a < b,
        ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b, ast.Is: lambda a, b: a is b,
        ast.IsNot: lambda a, b: a is not b}  # fmt: skip


def _too_big() -> Any:
    raise ValueError("exponent too large")


def _function(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and node.id in SAFE_CALLS:
        return SAFE_CALLS[node.id]
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math"
            and node.attr in SAFE_MATH):  # fmt: skip
        return SAFE_MATH[node.attr]
    raise NotConvertible(f"calls {ast.unparse(node)}")


def evaluate(node: ast.AST, outputs: dict[str, Any]) -> Any:
    """Evaluate a check over plain values: only the node types below, ``outputs`` as names, and
    ``SAFE_CALLS``/``SAFE_MATH``; NotConvertible for anything else (also used to vet checks)."""
    ev = lambda n: evaluate(n, outputs)  # noqa: E731
    if isinstance(node, ast.Expression):
        return ev(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in outputs:
            return outputs[node.id]
        raise NotConvertible(f"uses the name {node.id!r}")
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        if any(isinstance(e, ast.Starred) for e in node.elts):
            raise NotConvertible("starred element")
        kind = {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)]
        return kind(ev(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise NotConvertible("dict unpacking")
        return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
        value = ev(node.operand)
        return not value if isinstance(node.op, ast.Not) else -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        return _BIN[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.BoolOp):
        values = [ev(v) for v in node.values]  # every operand is vetted, no short cut
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and all(type(op) in _CMP for op in node.ops):
        left, ok = ev(node.left), True
        for op, right_node in zip(node.ops, node.comparators):
            right = ev(right_node)
            ok = ok and _CMP[type(op)](left, right)
            left = right
        return ok
    if isinstance(node, ast.Call):
        function = _function(node.func)
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise NotConvertible("star arguments")
        return function(*[ev(a) for a in node.args], **{k.arg: ev(k.value) for k in node.keywords})
    if isinstance(node, ast.Subscript):
        return ev(node.value)[ev(node.slice)]
    if isinstance(node, ast.Slice):
        return slice(*(None if p is None else ev(p) for p in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.IfExp):
        test, yes, no = ev(node.test), ev(node.body), ev(node.orelse)
        return yes if test else no
    raise NotConvertible(f"{type(node).__name__} in a test")


def _vet(node: ast.AST, slots: list[str]) -> None:
    """Raise NotConvertible unless ``evaluate`` knows every part of ``node`` (type errors on the
    placeholder values do not matter; only the structure is vetted)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id not in slots and sub.id not in SAFE_CALLS and sub.id != "math":
            raise NotConvertible(f"uses the name {sub.id!r}")
        if isinstance(sub, ast.Call):
            _function(sub.func)
        if isinstance(sub, ast.Attribute) and not (isinstance(sub.value, ast.Name) and sub.value.id == "math"):
            raise NotConvertible(f"attribute {ast.unparse(sub)}")
        if isinstance(sub, (ast.Lambda, ast.NamedExpr, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
                            ast.Await, ast.Yield, ast.YieldFrom, ast.FormattedValue, ast.JoinedStr, ast.Starred)):  # fmt: skip
            raise NotConvertible(f"{type(sub).__name__} in a test")


class _Slots(ast.NodeTransformer):
    """Replace each call of a tested function by a placeholder name, collecting the call's source."""

    def __init__(self, tested, rename: dict[str, str]) -> None:
        self.tested, self.rename, self.calls = tested, rename, []

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if not self.tested(node):
            return self.generic_visit(node)
        if any(
            self.tested(sub)
            for arg in [*node.args, *node.keywords]
            for sub in ast.walk(arg)
            if isinstance(sub, ast.Call)
        ):
            raise NotConvertible("a tested call inside another")
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.rename:
            func = ast.Name(self.rename[func.id], ast.Load())
        self.calls.append(ast.unparse(ast.Call(func, node.args, node.keywords)))
        return ast.Name(f"_o{len(self.calls) - 1}", ast.Load())


def from_asserts(statements: list[ast.stmt], tested, rename: dict[str, str] | None = None) -> Suite:
    """A suite from ``assert`` statements whose tested calls satisfy ``tested(call)``: one tested
    call per assert, everything else constants and ``SAFE_CALLS``. Docstrings and bare names are
    skipped; any other statement raises NotConvertible."""
    suite = Suite(calls=[])
    for st in statements:
        if isinstance(st, ast.Expr) and isinstance(st.value, (ast.Constant, ast.Name)):
            continue  # a docstring, or HumanEval/129's bare ``print``
        if not isinstance(st, ast.Assert):
            raise NotConvertible(f"{type(st).__name__} statement in a test")
        slots = _Slots(tested, rename or {})
        test = slots.visit(ast.parse(ast.unparse(st.test), mode="eval"))
        if len(slots.calls) > 1:
            raise NotConvertible("an assert with more than one tested call")
        names = [f"_o{i}" for i in range(len(slots.calls))]
        _vet(test, names)
        if not slots.calls:
            if not evaluate(test, {}):
                raise NotConvertible(f"an assert that always fails: {ast.unparse(st.test)}")
            continue  # ``assert True``
        base = len(suite.calls)
        test = ast.fix_missing_locations(_Renumber(base).visit(test))
        suite.calls += [{"expr": c} for c in slots.calls]
        suite.checks.append(("expr", test))
    if not suite.checks:
        raise NotConvertible("no assert calls the tested function")
    return suite


class _Renumber(ast.NodeTransformer):
    def __init__(self, base: int) -> None:
        self.base = base

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id.startswith("_o") and node.id[2:].isdigit():
            return ast.Name(f"_o{int(node.id[2:]) + self.base}", ast.Load())
        return node


def record(reference: str, functions: list[str], script: str, limits: Limits) -> Suite:
    """A suite recorded from the reference solution: ``script`` (the original test code) runs
    after ``reference`` with each of ``functions`` wrapped; each top-level call becomes a call
    whose recorded output is the expected value. NotConvertible when the run fails."""
    spec = {"fd": 3, "calls": [], "record": {"functions": functions, "script": script}}
    result = run_python(HARNESS, limits, {"solution.py": reference, "calls.json": json.dumps(spec)})
    if not result.ok:
        tail = (result.error or result.stderr.strip() or f"exit {result.returncode}").splitlines()[-1]
        raise NotConvertible(f"the reference solution failed its own test: {tail}")
    try:
        rows = json.loads(result.data)
    except ValueError:
        raise NotConvertible("the reference run returned no outputs") from None
    suite = Suite(calls=[], recorded=True)
    for name, args, kwargs, output in rows:
        suite.checks.append(("equal", (len(suite.calls), decode(output))))
        suite.calls.append({"fn": name, "args": args, "kwargs": kwargs})
    if not suite.calls:
        raise NotConvertible("the test never called the tested function")
    return suite


def failure(suite: Suite, result: Result) -> str | None:
    """Why the outputs the child returned fail the suite, in one line; None when every check holds.
    Anything malformed fails."""
    if not result.ok:
        if result.error or result.timed_out:
            return result.error or "timed out"
        lines = result.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit status {result.returncode}"  # e.g. ModuleNotFoundError: ...
    try:
        answers = json.loads(result.data)
        if type(answers) is not list or len(answers) != len(suite.calls):
            return "the program did not return one output per test call"
        outputs = {}
        for i, answer in enumerate(answers):
            if type(answer) is not list or len(answer) != 2:
                return "malformed output"
            if answer[0] != "ok":  # the child's word, so cut short
                return f"test call {i} raised {str(answer[1])[:80]}"
            outputs[f"_o{i}"] = decode(answer[1])
        for i, (kind, check) in enumerate(suite.checks):
            if kind == "expr":
                if not evaluate(check, outputs):  # truthiness of plain data: ``assert f(x)`` as written
                    return f"check {i} failed: {ast.unparse(check)}"
            else:
                slot, expected = check
                if not strict_eq(outputs[f"_o{slot}"], expected, RECORD_TOL):
                    return f"check {i} failed: a recorded output differs"
        return None
    except Exception as err:  # malformed data, or a check that raises on these outputs (e.g. None < 1)
        return f"malformed output ({type(err).__name__})"


def judge(suite: Suite, result: Result) -> bool:
    """Whether every check holds on the outputs the child returned; False on anything malformed."""
    return failure(suite, result) is None
