"""A tiny evaluator for the subset of the Batch autoscale language that infra/autoscale.py emits.

It lets the tests check what the formula *does* on scenarios (pending tasks over time, thin sample
history), not only what its text says. Unknown syntax raises, so the builder cannot drift into
constructs this evaluator (and the tests) do not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Value = float | list[float]
TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|(\$?[A-Za-z_][A-Za-z_0-9]*)|(<=|>=|==|!=|[-+*/()<>?:,.=]))")
CONSTANTS = {"TimeInterval_Minute": 60.0, "TimeInterval_Second": 1.0, "taskcompletion": 1.0, "requeue": 2.0}


@dataclass
class Metric:
    """A sampled service variable: ``samples`` newest first, one per minute; ``percent`` available."""

    samples: list[float]
    percent: float = 100.0

    def call(self, method: str, args: list[Value]) -> Value:
        if method == "GetSamplePercent":
            return self.percent
        if method == "GetSample":
            (arg,) = args
            assert isinstance(arg, float)
            count = 1 if arg == 1 else max(1, int(arg // 60))
            return self.samples[:count]
        raise ValueError(f"unsupported method {method}")


def _flatten(args: list[Value]) -> list[float]:
    return [v for a in args for v in (a if isinstance(a, list) else [a])]


FUNCTIONS = {
    "max": lambda args: float(max(_flatten(args))),
    "min": lambda args: float(min(_flatten(args))),
    "avg": lambda args: sum(_flatten(args)) / len(_flatten(args)),
}


@dataclass
class Evaluator:
    metrics: dict[str, Metric]
    variables: dict[str, Value] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)

    def run(self, formula: str) -> dict[str, Value]:
        text = re.sub(r"//[^\n]*", "", formula)
        for statement in filter(str.strip, text.split(";")):
            self.tokens = self._tokenize(statement)
            name = self._take()
            if self._take() != "=":
                raise ValueError(f"expected assignment in {statement!r}")
            self.variables[name] = self._ternary()
            if self.tokens:
                raise ValueError(f"trailing tokens {self.tokens} in {statement!r}")
        return self.variables

    @staticmethod
    def _tokenize(text: str) -> list[str]:
        tokens, pos = [], 0
        while pos < len(text.rstrip()):
            match = TOKEN.match(text, pos)
            if not match:
                raise ValueError(f"cannot parse {text[pos:]!r}")
            tokens.append(next(g for g in match.groups() if g is not None))
            pos = match.end()
        return tokens

    def _take(self, expected: str | None = None) -> str:
        token = self.tokens.pop(0)
        if expected is not None and token != expected:
            raise ValueError(f"expected {expected!r}, got {token!r}")
        return token

    def _peek(self) -> str | None:
        return self.tokens[0] if self.tokens else None

    def _ternary(self) -> Value:
        condition = self._comparison()
        if self._peek() != "?":
            return condition
        self._take("?")
        yes = self._ternary()
        self._take(":")
        no = self._ternary()
        return yes if condition else no

    def _comparison(self) -> Value:
        left = self._sum()
        ops = {
            "<": float.__lt__,
            "<=": float.__le__,
            ">": float.__gt__,
            ">=": float.__ge__,
            "==": float.__eq__,
            "!=": float.__ne__,
        }
        while self._peek() in ops:
            op = ops[self._take()]
            right = self._sum()
            assert isinstance(left, float) and isinstance(right, float)
            left = 1.0 if op(left, right) else 0.0
        return left

    def _sum(self) -> Value:
        left = self._product()
        while self._peek() in ("+", "-"):
            op, right = self._take(), self._product()
            assert isinstance(left, float) and isinstance(right, float)
            left = left + right if op == "+" else left - right
        return left

    def _product(self) -> Value:
        left = self._unary()
        while self._peek() in ("*", "/"):
            op, right = self._take(), self._unary()
            assert isinstance(left, float) and isinstance(right, float)
            left = left * right if op == "*" else left / right
        return left

    def _unary(self) -> Value:
        if self._peek() == "-":
            self._take()
            value = self._unary()
            assert isinstance(value, float)
            return -value
        return self._primary()

    def _args(self) -> list[Value]:
        self._take("(")
        args: list[Value] = []
        while self._peek() != ")":
            args.append(self._ternary())
            if self._peek() == ",":
                self._take()
        self._take(")")
        return args

    def _primary(self) -> Value:
        token = self._take()
        if token == "(":
            value = self._ternary()
            self._take(")")
            return value
        if token[0].isdigit():
            return float(token)
        if token.startswith("$"):
            if self._peek() == ".":
                self._take()
                return self.metrics[token].call(self._take(), self._args())
            return self.variables[token]
        if token in FUNCTIONS:
            return FUNCTIONS[token](self._args())  # type: ignore[no-untyped-call]
        if token in CONSTANTS:
            return CONSTANTS[token]
        raise ValueError(f"unsupported token {token!r}")


def evaluate(
    formula: str, pending: list[float], percent: float = 100.0, spot_nodes: float = 0, preempted: float = 0
) -> dict[str, Value]:
    """Run the formula on ``pending`` ($PendingTasks, newest first) and the pool's current Spot nodes: all of them
    ($CurrentLowPriorityNodes, preempted ones included, as Batch counts them) and the preempted ones."""
    return Evaluator(
        {
            "$PendingTasks": Metric([float(p) for p in pending], float(percent)),
            "$CurrentLowPriorityNodes": Metric([float(spot_nodes)]),
            "$PreemptedNodeCount": Metric([float(preempted)]),
        }
    ).run(formula)
