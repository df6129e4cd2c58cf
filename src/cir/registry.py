"""A name -> component registry: a method or an attack is one file that registers itself here.

Anchor: TamperBench's `ATTACKS_REGISTRY`. Lookup of an unknown name lists the known ones. An entry
may carry its search space for `cir tune`: a function from an Optuna trial and the model's shape
(`cir.modules.ModelShape`) to config overrides.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cir.errors import ConfigError

if TYPE_CHECKING:
    from optuna import Trial

    from cir.modules import ModelShape

SearchSpace = Callable[["Trial", "ModelShape"], dict[str, Any]]  # (trial, shape) -> config overrides
# A method's part in a comparison: the method under test, its ablation, or a baseline it is compared with
Role = Literal["headline", "ablation", "baseline"]


@dataclass(frozen=True)
class Entry:
    """One registered component: how to build it and the dataclass that configures it."""

    name: str
    build: Callable[..., Any]  # build(config) -> component
    config_class: type
    description: str
    search_space: SearchSpace | None = None  # for `cir tune`; None = not tunable
    role: Role = "baseline"  # the report's best baseline is chosen among the "baseline" methods


class Registry:
    """Maps names to components of one kind (methods or attacks)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        config_class: type,
        description: str,
        search_space: SearchSpace | None = None,
        role: Role = "baseline",
    ) -> Callable[[Any], Any]:
        """Return a decorator that registers a class or factory under `name`.

        Args:
            name: the registry key (equal to the file name).
            config_class: the dataclass that configures the component.
            description: one line for `cir methods` / `cir attacks`.
            search_space: optional `(trial, shape) -> config overrides` for `cir tune`.
            role: "headline" (the method under test), "ablation" or "baseline" (what it is compared with).

        Raises:
            ValueError: if `name` is already taken (a programming error, not a user one).
        """

        def decorate(build: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, build, config_class, description, search_space, role)
            return build

        return decorate

    def get(self, name: str) -> Entry:
        """Return the entry called `name`.

        Raises:
            ConfigError: if no such entry exists; the message lists the known names.
        """
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._entries)

    def build(self, name: str, config: Any) -> Any:
        """Build the component `name` from its config dataclass.

        Raises:
            ConfigError: for an unknown name, or a config of another class than the entry's (which
                would otherwise fail mid-run on the first field it lacks).
        """
        entry = self.get(name)
        if not isinstance(config, entry.config_class):
            raise ConfigError(
                f"{self.kind} {name!r} is configured by {entry.config_class.__module__}."
                f"{entry.config_class.__name__}, got a {type(config).__module__}.{type(config).__name__}"
            )
        return entry.build(config)


METHODS = Registry("method")
ATTACKS = Registry("attack")
PROBES = Registry("probe")
