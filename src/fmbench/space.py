"""A search space as data: `Float`, `Int` and `Choice` over a model's settings.

models/__init__.py declares each model's space beside its presets; `fmbench models` shows it and
`fmbench tune` samples it (fmbench.tuning). This module imports nothing of fmbench's but errors,
so the registry can use it, and nothing of Optuna's: a trial is any object with Optuna's
`suggest_float`, `suggest_int` and `suggest_categorical`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from fmbench.errors import ConfigError


@dataclass(frozen=True)
class Float:
    """A real number in [low, high]; `log` samples its logarithm uniformly (learning rates)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ConfigError(f"a float range needs low < high{' and low > 0 (log)' if self.log else ''}; "
                              f"got {self.low:g}..{self.high:g}")

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def __str__(self) -> str:     # "0.0..1.0", not "0..1": what `parse` reads back as this Float
        def text(x: float) -> str:
            s = f"{x:g}"
            return s if any(c in s for c in ".en") else f"{s}.0"

        return f"{text(self.low)}..{text(self.high)}{':log' if self.log else ''}"


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] (both included)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ConfigError(f"an integer range needs low < high; got {self.low}..{self.high}")

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high)

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"


@dataclass(frozen=True)
class Choice:
    """One of a few values (batch sizes, an optimizer's name)."""

    values: tuple

    def __post_init__(self) -> None:
        if len(self.values) < 2 or len(set(self.values)) != len(self.values):
            raise ConfigError(f"a choice needs two or more distinct values; got {'|'.join(map(str, self.values))}")

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def __str__(self) -> str:
        return "|".join(map(str, self.values))


Param = Union[Float, Int, Choice]

SYNTAX = "LOW..HIGH (a float or integer range; LOW..HIGH:log samples it on a log scale) or A|B|C (a choice)"


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse(key: str, text: str) -> Param:
    """`--space KEY=TEXT`: "1e-4..1e-2:log" -> Float, "2..6" -> Int, "128|256|512" -> Choice."""
    text = text.strip()
    if "|" in text:
        return Choice(tuple(_number(v.strip()) for v in text.split("|")))
    bounds, _, scale = text.partition(":")
    low, sep, high = bounds.partition("..")
    low, high = _number(low.strip()), _number(high.strip())
    if not sep or scale not in ("", "log") or isinstance(low, str) or isinstance(high, str):
        raise ConfigError(f"--space {key}={text}: expected {SYNTAX}")
    if isinstance(low, int) and isinstance(high, int) and not scale:
        return Int(low, high)
    return Float(float(low), float(high), log=bool(scale))


def describe(space: dict[str, Param]) -> str:
    """One line: "lr 3e-04..0.01:log, batch_size 128|256|512, ..."."""
    return ", ".join(f"{k} {p}" for k, p in space.items())
