"""Small typed registries: a decorator at the definition, ``get(name)`` with a helpful error."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, filled by ``@registry.register("name")`` where the object is defined.

    >>> methods = Registry[type]("method")
    >>> @methods.register("GA")
    ... class GradientAscent: ...
    >>> methods.get("GA").__name__
    'GradientAscent'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}") from None

    def build(self, name: str, options: Mapping[str, Any] | None = None) -> Any:
        """An instance of the registered dataclass ``name`` made with keyword ``options``.

        An option that is not one of its init fields is an error that lists the valid ones.
        """
        cls = self.get(name)
        options = dict(options or {})
        valid = sorted(f.name for f in dataclasses.fields(cls) if f.init)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r} for {self.kind} {name}; valid: {', '.join(valid) or 'none'}")
        return cls(**options)

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
