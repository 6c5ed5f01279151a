"""One registry mechanism: ``Registry``, a dict-like map from a name to an entry, filled by ``register``.

Every pluggable thing of the package is a :class:`Registry`: ``BACKBONES`` (:mod:`promptloop_env.backbones`),
``FAMILIES`` (backbone families), ``REWARDS``, ``PREVIEWS``, ``PROMPT_SETS`` and the agents' evaluation agents.
An entry is registered where it is defined, by the module that defines it: ``register`` works as a call or as a
decorator, so a new reward, preview or backbone family is one module and no list elsewhere changes.

A registry may name a package to *discover*: the first time it is read, every module of that package is
imported, so that the modules register their entries (backbone families, whose modules import diffusers'
pipelines, are found this way without importing them with ``promptloop_env``). Such modules keep heavy optional
dependencies lazy (imported inside the factories).

>>> COLOURS = Registry("colour")
>>> @COLOURS.register("red")
... def red() -> str:
...     return "#ff0000"
>>> COLOURS.register("blue", lambda: "#0000ff")  # doctest: +ELLIPSIS
<function <lambda> at ...>
>>> COLOURS["red"](), sorted(COLOURS)
('#ff0000', ['blue', 'red'])
>>> COLOURS["green"]
Traceback (most recent call last):
...
promptloop_env.registry.UnknownNameError: Unknown colour 'green'. Valid names: blue, red.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
E = TypeVar("E")


class UnknownNameError(KeyError, ValueError):
    """A name that a registry does not hold; both a ``KeyError`` (dict-like) and a ``ValueError`` (a bad argument).

    The message lists the valid names.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(MutableMapping[str, T], Generic[T]):
    """Name -> entry, dict-like, with :meth:`register` and a clear error for unknown names.

    Args:
        kind: what an entry is, for messages (``"backbone"``, ``"reward"``, ``"prompt set"``).
        discover: a package whose modules are all imported the first time the registry is read (see the module
            docstring); None: entries come only from explicit ``register`` calls.
        hint: a sentence appended to the unknown-name error (e.g. what else the argument may be).
        quiet: import the ``discover`` package's modules within :func:`promptloop_env.logs.quiet_loading` (for
            modules that import diffusers' pipelines, which make transformers print fallback warnings).
    """

    def __init__(self, kind: str, discover: str | None = None, hint: str = "", quiet: bool = False) -> None:
        self.kind = kind
        self.hint = hint
        self.quiet = quiet
        self._discover = discover
        self._entries: dict[str, T] = {}

    # -- registering --------------------------------------------------------------------------------
    @overload
    def register(self, name: str) -> Callable[[E], E]: ...
    @overload
    def register(self, name: str, entry: E, *, replace: bool = False) -> E: ...

    def register(self, name: str, entry: Any = None, *, replace: bool = False) -> Any:
        """Register ``entry`` under ``name`` and return it; without ``entry``, a decorator that registers its target.

        Args:
            name: the name users pass (e.g. ``reward="my-reward"``).
            entry: what the name stands for; omitted when used as ``@REGISTRY.register(name)``.
            replace: allow replacing another entry of the same name (registering the same object twice is fine).

        Raises:
            ValueError: ``name`` is taken by another entry and ``replace`` is False.
            TypeError: ``name`` is not a non-empty str.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"A {self.kind} name must be a non-empty str; got {name!r}.")
        if entry is None:
            return lambda target: self.register(name, target, replace=replace)
        old = self._entries.get(name)
        if old is not None and old is not entry and old != entry and not replace:
            raise ValueError(
                f"{self.kind.capitalize()} {name!r} is already registered ({_describe(old)}); pick another name or "
                "pass replace=True."
            )
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its entry (tests register temporary entries)."""
        return self._entries.pop(name)

    # -- reading ------------------------------------------------------------------------------------
    def unknown(self, name: Any) -> UnknownNameError:
        """The error for a name this registry does not hold; it lists the valid names."""
        message = f"Unknown {self.kind} {name!r}. Valid names: {', '.join(sorted(self))}."
        return UnknownNameError(f"{message} {self.hint}".rstrip())

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.unknown(name) from None

    def __setitem__(self, name: str, entry: T) -> None:
        self.register(name, entry, replace=True)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(dict(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={sorted(self._entries)})"

    def _load(self) -> None:
        """Import every module of the ``discover`` package once (each registers its entries)."""
        package_name, self._discover = self._discover, None
        if package_name is None:
            return
        from promptloop_env.logs import quiet_loading

        with quiet_loading(progress=not self.quiet):
            package = importlib.import_module(package_name)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{package_name}.{module.name}")


PLUGIN_GROUP = "promptloop_env.plugins"
"""The entry-point group of installed packages that register entries: each entry point names a module (or a
function without arguments) that ``import promptloop_env`` imports (calls), so that its names work everywhere,
the ``promptloop`` command line included."""


def load_plugins(group: str = PLUGIN_GROUP) -> list[str]:
    """Import (or call) every entry point of ``group``; return their names. A failing plugin is a warning.

    A package declares one in its ``pyproject.toml``::

        [project.entry-points."promptloop_env.plugins"]
        my_models = "my_package.promptloop_plugin"
    """
    import warnings
    from importlib.metadata import entry_points

    loaded = []
    for point in entry_points(group=group):
        try:
            target = point.load()
            if callable(target):
                target()
        except Exception as err:  # noqa: BLE001  (a broken plugin must not break the env)
            warnings.warn(
                f"promptloop_env plugin {point.name!r} ({point.value}) failed to load: {err!r}", stacklevel=2
            )
            continue
        loaded.append(point.name)
    return loaded


def _describe(entry: Any) -> str:
    name = getattr(entry, "__qualname__", None)
    module = getattr(entry, "__module__", None)
    return f"{module}.{name}" if name and module else type(entry).__name__


def lookup(registry: Mapping[str, Any], name: str, kind: str) -> Any:
    """``registry[name]``, or an :class:`UnknownNameError` (a ``ValueError``) that lists the valid names.

    For plain dicts of fixed choices; a :class:`Registry` raises the same error itself.
    """
    if isinstance(registry, Registry):
        return registry[name]
    if name not in registry:
        valid = ", ".join(sorted(registry))
        raise UnknownNameError(f"Unknown {kind} {name!r}. Valid names: {valid}.")
    return registry[name]


def resolve(target: Any) -> Any:
    """``target`` itself, or the attribute that a ``"package.module:attribute"`` string names.

    Registries hold objects, not strings; this reads the strings of older code and of config files.

    >>> resolve("math:pi") > 3, resolve(len) is len
    (True, True)
    """
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
