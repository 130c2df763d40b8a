"""The built-in tools, all network-free: a safe calculator, sandboxed Python, and agent files.

They register through the same ``aios_tools`` hook as third-party plugins.
"""

from __future__ import annotations

import ast
import math
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import pluggy

from aios.managers.sandbox import Sandbox
from aios.managers.tools import Tool, tool

hookimpl = pluggy.HookimplMarker("aios")

#: Longest expression the calculator parses, and the largest integer it builds (in bits):
#: both keep a model's input from costing the kernel more than microseconds.
MAX_EXPRESSION_CHARS = 1000
MAX_INT_BITS = 10_000
MAX_FACTORIAL = 1000


def _factorial(n: float) -> int:
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or not 0 <= n <= MAX_FACTORIAL:
        raise ValueError(f"factorial needs an integer from 0 to {MAX_FACTORIAL}, got {n!r}")
    return math.factorial(n)


_FUNCTIONS: Mapping[str, Callable[..., Any]] = types.MappingProxyType(
    {
        "abs": abs,
        "round": round,
        "min": min,
        "max": max,
        "sqrt": math.sqrt,
        "exp": math.exp,
        "log": math.log,
        "log2": math.log2,
        "log10": math.log10,
        "sin": math.sin,
        "cos": math.cos,
        "tan": math.tan,
        "asin": math.asin,
        "acos": math.acos,
        "atan": math.atan,
        "floor": math.floor,
        "ceil": math.ceil,
        "factorial": _factorial,
    }
)
_CONSTANTS: Mapping[str, float] = types.MappingProxyType({"pi": math.pi, "e": math.e, "tau": math.tau})
_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; ``ValueError`` naming what is not allowed otherwise."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("the expression is empty")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not an arithmetic expression: {getattr(exc, 'msg', exc)}") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except OverflowError:
        raise ValueError("the result is too large") from None
    except RecursionError:
        raise ValueError("the expression is nested too deeply") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("the result is not a finite number")
    return value


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ValueError(f"only numbers are allowed, got {node.value!r}")
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ValueError(f"unknown name {node.id!r}; known constants: {', '.join(_CONSTANTS)}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        operand = _eval(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, _BINARY):
        return _binary(node.op, _eval(node.left), _eval(node.right))
    if isinstance(node, ast.Call):
        return _call(node)
    raise ValueError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def _binary(op: ast.operator, a: int | float, b: int | float) -> int | float:
    if isinstance(op, ast.Pow):
        return _power(a, b)
    if isinstance(op, ast.Mult) and isinstance(a, int) and isinstance(b, int):
        _check_bits(abs(a).bit_length() + abs(b).bit_length())
    result: int | float
    if isinstance(op, ast.Add):
        result = a + b
    elif isinstance(op, ast.Sub):
        result = a - b
    elif isinstance(op, ast.Mult):
        result = a * b
    elif isinstance(op, ast.Div):
        result = a / b
    elif isinstance(op, ast.FloorDiv):
        result = a // b
    else:
        result = a % b
    return result


def _power(base: int | float, exponent: int | float) -> int | float:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # Refuse before computing: 9**9**9 would take the kernel's memory and minutes.
        _check_bits(exponent * abs(base).bit_length())
    if abs(exponent) > 1_000_000 and abs(base) not in (0, 1):
        raise ValueError(f"the exponent {exponent!r} is too large")
    result = base**exponent
    if isinstance(result, complex):
        raise ValueError("the result is not a real number")
    return result


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise ValueError(f"the result would have about {bits} bits; the limit is {MAX_INT_BITS}")


def _call(node: ast.Call) -> int | float:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name is None or name not in _FUNCTIONS:
        shown = name if name is not None else type(node.func).__name__
        raise ValueError(f"{shown!r} is not an allowed function; allowed: {', '.join(_FUNCTIONS)}")
    if node.keywords:
        raise ValueError(f"{name}() takes no keyword arguments")
    args = [_eval(a) for a in node.args]
    try:
        value = _FUNCTIONS[name](*args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}(): {exc}") from None
    if not isinstance(value, int | float):
        raise ValueError(f"{name}() did not give a real number")
    return value


@tool
def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression exactly (integers stay exact) and return the number.

    Args:
        expression: Numbers with + - * / // % ** and parentheses, the constants pi, e, tau and
            the functions abs, round, min, max, sqrt, exp, log, log2, log10, sin, cos, tan, asin,
            acos, atan, floor, ceil, factorial. Example: "sqrt(2) * (3 + 4) ** 2".
    """
    return evaluate(expression)


def make_python_tool(
    sandbox: Sandbox | None = None,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 256,
    max_processes: int = 16,
    max_output_bytes: int = 16 * 1024,
    concurrency: int = 2,
) -> Tool:
    """The ``python`` tool: runs a program in the sandbox and returns its output and exit status."""
    box = sandbox or Sandbox()

    async def python(code: str) -> dict[str, Any]:
        """Run a Python program in an isolated sandbox and return its stdout, stderr and exit code.

        The sandbox has no network and can only write files in its own temporary directory;
        nothing persists between runs.

        Args:
            code: A complete Python 3 program; print what you want to see.
        """
        r = await box.run(
            code,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_processes=max_processes,
            max_output_bytes=max_output_bytes,
        )
        return {
            "stdout": r.stdout,
            "stderr": r.stderr,
            "exit_code": r.exit_code,
            "timed_out": r.timed_out,
            "out_of_memory": r.oom,
            "truncated": r.truncated,
        }

    # The tool's own timeout leaves room for the sandbox to start and to clean up after itself.
    return Tool.from_function(python, concurrency=concurrency, timeout=timeout_s + 15)


def make_file_tool(
    read: Callable[[str], Awaitable[bytes]],
    write: Callable[[str, bytes], Awaitable[int]],
    list_: Callable[[str], Awaitable[list[str]]],
    *,
    max_read_bytes: int = 64 * 1024,
    name: str = "file",
) -> Tool:
    """The ``file`` tool over an agent's storage: ``read(path)``, ``write(path, data)``, ``list_(prefix)``."""

    async def file(
        action: Literal["read", "write", "list"], path: str = "", content: str | None = None
    ) -> dict[str, Any]:
        """Read, write or list your own files (durable storage that keeps old versions).

        Args:
            action: "read" returns the text of the file at path; "write" stores content at path;
                "list" returns the paths that start with path (an empty path lists all files).
            path: The file's path, for example "notes/plan.txt".
            content: The text to store; only for "write".
        """
        if "\x00" in path or len(path) > 1024:
            raise ValueError("path must be at most 1024 characters and contain no NUL")
        if action == "list":
            return {"paths": list(await list_(path))}
        if not path:
            raise ValueError(f"path is required to {action} a file")
        if action == "write":
            if content is None:
                raise ValueError("content is required to write a file")
            return {"path": path, "bytes_written": await write(path, content.encode("utf-8"))}
        data = await read(path)
        cut = len(data) > max_read_bytes
        try:
            text = data[:max_read_bytes].decode("utf-8", errors="strict" if not cut else "ignore")
        except UnicodeDecodeError:
            return {"path": path, "size": len(data), "binary": True, "content": None}
        return {"path": path, "size": len(data), "content": text, "truncated": cut}

    return Tool.from_function(file, name=name)


def builtin_tools() -> list[Tool]:
    """Fresh instances of the built-in tools that need no binding: ``calculator`` and ``python``."""
    return [calculator, make_python_tool()]


@hookimpl
def aios_tools() -> list[Tool]:
    """Plugin hook: the built-in tools, registered like any third party's."""
    return builtin_tools()
