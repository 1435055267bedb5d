"""Name -> factory registries (timm style), so the CLI and TOML can address things by name.

An entry may carry metadata beside its factory (``register(name, info)``, read with ``info(name)``),
e.g. a classifier's head and GradCAM layers, so everything about one entry is in one place.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from .errors import MedaugError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict from name to factory with a decorator and a helpful unknown-name error."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}
        self._info: dict[str, Any] = {}

    def register(self, name: str, info: Any = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``fn`` builds entry ``name``; ``info`` is the entry's metadata (see :meth:`info`)."""
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            self._info[name] = info
            return fn

        return deco

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._items:
            raise MedaugError(
                f"unknown {self.kind} {name!r}: choose one of {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def info(self, name: str) -> Any:
        """The metadata registered with ``name`` (None if none was given); unknown names are a clear error."""
        self.get(name)
        return self._info[name]

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
