"""A search's space: ``hydra.sweeper.params`` and the sweeps given on the command line.

A dimension is written in either of two forms, mixed freely:

- cnnzoo's, in a search config: ``key: {type: float|int, low, high, log: false, step: null}``
  (``size: n``: a list of n values, one per stage) or ``{type: categorical, choices: [...]}``
  (choices may be lists, e.g. stage widths). The trial sets the key with ``++key=value``, so it
  need not be declared in the config (a registered net's arguments seldom are);
- Hydra's sweep syntax, as hydra-optuna-sweeper reads it, on the command line or as a string in
  ``params``: ``choice(a,b)`` or ``a,b`` (categorical; also for config groups: ``model=lenet,mlp``),
  ``range(1,5)`` (the integers 1 to 4, as Hydra's basic sweeper and Python read it; with a float
  step, floats), ``interval(0.1,1)`` (floats; ``int(interval(1,8))``: integers),
  ``tag(log, interval(1e-4,1e-1))`` (log scale), ``shuffle(...)`` (categorical). The trial's
  override is written as the sweep was (``+key=...`` stays ``+key``).

Any other override (``key=value``, ``+key=value``, ``~key``) is the same in every trial. The
command line wins over ``params``: ``python train.py -m hparams_search=mnist_optuna
data.batch_size=64`` takes the batch size out of the search.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Dimension", "SearchSpace", "override_value", "search_space", "suggest"]


def override_value(value: Any) -> str:
    """A value as an override's right-hand side (lists, booleans and null in JSON, which Hydra's
    grammar reads)."""
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _encoded(choices: Sequence[Any]) -> list[Any]:
    # Optuna stores scalar choices; lists are kept as their JSON text
    return [json.dumps(c) if isinstance(c, (list, dict)) else c for c in choices]


def suggest(trial: Any, name: str, spec: Mapping[str, Any]) -> Any:
    """One value of a cnnzoo-form dimension, drawn by ``trial``."""
    kind = spec.get("type")
    size = spec.get("size")
    if kind in ("float", "int"):
        suggest_one = trial.suggest_float if kind == "float" else trial.suggest_int
        options = {k: spec[k] for k in ("log", "step") if spec.get(k) is not None}
        if size is not None:
            return [
                suggest_one(f"{name}.{i}", spec["low"], spec["high"], **options)
                for i in range(int(size))
            ]
        return suggest_one(name, spec["low"], spec["high"], **options)
    if kind == "categorical":
        choices = list(spec["choices"])
        encoded = _encoded(choices)
        value = trial.suggest_categorical(name, encoded)
        return choices[encoded.index(value)]
    raise ValueError(
        f"hydra.sweeper.params.{name}: type must be float, int or categorical, got {kind!r}"
    )


@dataclass(frozen=True)
class Dimension:
    """One key of the search: Optuna's parameter ``name``, set in a job by ``key=<value>``."""

    name: str
    key: str
    spec: Mapping[str, Any]

    @property
    def param_names(self) -> list[str]:
        """The Optuna parameters it draws (``name.0`` ... for a ``size: n`` list)."""
        size = self.spec.get("size")
        return [self.name] if size is None else [f"{self.name}.{i}" for i in range(int(size))]

    def override(self, trial: Any) -> str:
        return f"{self.key}={override_value(suggest(trial, self.name, self.spec))}"

    def grid(self) -> list[Any]:
        """Every value, for ``GridSampler``: discrete dimensions only."""
        spec = self.spec
        if spec["type"] == "categorical":
            return _encoded(spec["choices"])
        low, high, step = spec["low"], spec["high"], spec.get("step")
        if spec["type"] == "int" and not spec.get("log"):
            return list(range(int(low), int(high) + 1, int(step or 1)))
        if spec["type"] == "float" and step and not spec.get("log"):
            count = round((high - low) / step)
            return [round(low + i * step, 12) for i in range(count + 1)]
        from cnnzoo.errors import UserError

        raise UserError(
            f"{self.name}: GridSampler needs discrete values (choices, integers, or floats with "
            f"a step), not {dict(spec)}"
        )


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]
    # overrides every trial's job gets as they are
    fixed: tuple[str, ...]

    @property
    def param_names(self) -> set[str]:
        return {name for dim in self.dimensions for name in dim.param_names}

    def grid(self) -> dict[str, list[Any]]:
        return {name: dim.grid() for dim in self.dimensions for name in dim.param_names}


def _from_sweep(override: Any) -> dict[str, Any]:
    """The cnnzoo form of a Hydra sweep override (choice, range, interval, tag, shuffle)."""
    from hydra.core.override_parser.types import Transformer

    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        # Hydra's own text for each choice (a string keeps its escaping, a list is `[1,2]`)
        return {"type": "categorical", "choices": list(override.sweep_iterator(Transformer.encode))}
    if override.is_range_sweep():
        values = list(override.sweep_iterator())  # Hydra's expansion: range(1,5) is 1..4
        if not values:
            raise ValueError(f"{override.input_line}: the range is empty")
        kind = "int" if all(isinstance(v, int) for v in values) else "float"
        step = abs(value.step)
        return {"type": kind, "low": min(values), "high": max(values), "step": step}
    if override.is_interval_sweep():
        ints = isinstance(value.start, int) and isinstance(value.end, int)
        return {
            "type": "int" if ints else "float",
            "low": value.start,
            "high": value.end,
            "log": "log" in value.tags,
        }
    raise ValueError(f"{override.input_line}: not a sweep the Optuna sweeper can search")


def search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """The dimensions and fixed overrides of ``params`` (a search config's node) and the
    command line's ``arguments``; a key set in both is the command line's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from cnnzoo.records import override_key

    parser = OverridesParser.create()
    entries: dict[str, Dimension | str] = {}

    def add(key: str, entry: Dimension | str) -> None:
        entries.pop(key, None)  # the later one, in its own place
        entries[key] = entry

    lines = []
    for name, spec in params.items():
        if isinstance(spec, Mapping):
            add(name, Dimension(name=name, key=f"++{name}", spec=dict(spec)))
        else:  # Hydra's form: a sweep, or a value every trial gets
            lines.append(f"{name}={override_value(spec)}")
    for override in parser.parse_overrides([*lines, *arguments]):
        key = override_key(override.input_line)
        if override.is_sweep_override():
            element = override.get_key_element()
            add(key, Dimension(name=element, key=element, spec=_from_sweep(override)))
        else:
            add(key, override.input_line)
    dimensions = tuple(e for e in entries.values() if isinstance(e, Dimension))
    return SearchSpace(dimensions, tuple(e for e in entries.values() if isinstance(e, str)))
