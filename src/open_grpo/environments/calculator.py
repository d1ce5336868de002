"""`calculator`: a stateless tool that evaluates an arithmetic expression (Python's arithmetic), in the trainer
process: no code runs, the expression is parsed and only numbers and arithmetic operators are evaluated, within size
bounds.

    tools: [calculator]            # or {name: calculator, max_digits: 100}
"""

from __future__ import annotations

import ast
import math
import operator

from open_grpo.environments import ToolError

OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}  # fmt: skip
MAX_EXPRESSION_CHARS = 1000


def calculator(expression: str, *, max_digits: int = 1000) -> str:
    """Evaluate an arithmetic expression and return its value.

    Args:
        expression: Numbers with + - * / // % ** and parentheses, e.g. "(1234 + 56) * 7 - 8 ** 2".
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        return ToolError(f"error: the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        return str(_evaluate(tree.body, max_digits))
    except (SyntaxError, ValueError, ArithmeticError, TypeError) as e:
        return ToolError(f"error: {e}")


def _evaluate(node, max_digits: int):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand, max_digits)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        left, right = _evaluate(node.left, max_digits), _evaluate(node.right, max_digits)
        if isinstance(node.op, ast.Pow) and _digits(left) * abs(right) > max_digits:
            raise ValueError(f"the result would have more than {max_digits} digits")
        result = OPERATORS[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ValueError(f"{ast.unparse(node)} is not a real number")
        if _digits(result) > max_digits:
            raise ValueError(f"the result has more than {max_digits} digits")
        return result
    raise ValueError(f"only numbers and + - * / // % ** are allowed, not {ast.unparse(node)!r}")


def _digits(value) -> float:
    """Decimal digits of a number's integer part (an estimate for huge ints, without converting them to text)."""
    if isinstance(value, float):
        return 0 if math.isinf(value) or math.isnan(value) or value == 0 else max(1, math.log10(abs(value)) + 1)
    return abs(value).bit_length() * math.log10(2) + 1
