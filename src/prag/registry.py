"""`Registry`: the named table behind every extension point (retrievers, augmenters, models, merges, methods,
generation backends). A new implementation is one `register` call; an unknown name is a `PragError` that lists
the known ones."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import PragError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # what an entry is, for error messages: "retriever", "merge", ...
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None) -> Callable[[T], T] | T:
        """Add `item` under `name`; without `item`, a decorator that registers what it decorates."""
        if item is None:
            return lambda obj: self.register(name, obj)
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise PragError(f"unknown {self.kind} {name!r}: use {self.choices()}") from None

    def check(self, name: str) -> str:
        """`name` if it is registered, else the same error as `get`."""
        self.get(name)
        return name

    def choices(self) -> str:
        return ", ".join(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)
