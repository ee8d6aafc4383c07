"""Name registries (algorithms, compressors): one rule for spelling a name, one resolver.

A name is looked up by :func:`laqcore._validate.registry_key` (case, surrounding blanks and
``-`` versus ``_`` do not matter) and resolved to the spelling it was registered under.
Aliases resolve to a registered name; *deprecated* aliases too, with a ``DeprecationWarning``
naming the one name to use.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from ._validate import registry_key

__all__ = ["Registry"]


def __dir__() -> list[str]:
    return __all__


T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, plus aliases, for one ``kind`` of object ("algorithm", ...).

    ``entries`` maps each registered name (as spelled at registration) to its entry;
    ``aliases`` maps the normalised alias to that name.
    """

    def __init__(self, kind: str, *, sorted_names: bool = False) -> None:
        self.kind = kind
        self.sorted_names = sorted_names
        self.entries: dict[str, T] = {}
        self.aliases: dict[str, str] = {}
        self.deprecated: set[str] = set()
        #: Normalised names and aliases that ``replace=True`` cannot take over (:meth:`seal`).
        self.sealed: set[str] = set()

    def add(
        self,
        name: str,
        entry: T,
        *,
        aliases: Iterable[str] = (),
        deprecated_aliases: Iterable[str] = (),
        replace: bool = False,
    ) -> None:
        """Register ``entry`` under ``name`` and its aliases; a name taken already (as a name
        or an alias, in any spelling) raises ``ValueError`` unless ``replace``, and a sealed
        one (:meth:`seal`) even with ``replace``."""
        old = [registry_key(a) for a in deprecated_aliases]
        keys = [registry_key(a) for a in aliases] + old
        for key in [registry_key(name), *keys]:
            if key in self.sealed:
                raise ValueError(
                    f"{self.kind} name {key!r} is already registered, built in: it cannot be "
                    "replaced (laqcore's own code builds it by that name); register yours "
                    "under another name"
                )
            if not replace and self._lookup(key) is not None:
                raise ValueError(f"{self.kind} name {key!r} is already registered")
        self.entries[name] = entry
        self.aliases.pop(registry_key(name), None)
        for key in keys:
            self.aliases[key] = name
        self.deprecated.difference_update([registry_key(name), *keys])
        self.deprecated.update(old)

    def seal(self) -> None:
        """Make every name and alias registered so far permanent (the built-in ones): other
        code resolves them expecting the built-in entries, so a replacement would silently
        change what that code runs."""
        self.sealed.update(registry_key(n) for n in self.entries)
        self.sealed.update(self.aliases)

    def _lookup(self, key: str) -> str | None:
        for registered in self.entries:
            if registry_key(registered) == key:
                return registered
        return self.aliases.get(key)

    def resolve(self, name: Any) -> str:
        """The registered name that ``name`` (a name or an alias, in any spelling) means;
        ``TypeError`` for a non-string, ``ValueError`` listing the names for an unknown one."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {name!r}")
        key = registry_key(name)
        found = self._lookup(key)
        if found is None:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        if key in self.deprecated:
            warnings.warn(
                f"{self.kind} name {name!r} is deprecated; use {found!r}",
                DeprecationWarning,
                stacklevel=3,
            )
        return found

    def names(self) -> list[str]:
        """The registered names, sorted or in registration order (aliases not listed)."""
        return sorted(self.entries) if self.sorted_names else list(self.entries)
