"""Handlers for received CALLs, declared with ``@on(Action)`` as in the ``ocpp`` library.

::

    class CentralSystem(Handlers):
        @on("BootNotification")
        async def boot(self, payload: v16.BootNotificationRequest) -> v16.BootNotificationResponse:
            return {"status": "Accepted", "currentTime": now(), "interval": 300}

        @after("BootNotification")
        async def boot_done(self, payload: v16.BootNotificationRequest) -> None:
            ...  # runs once the CALLRESULT has been sent

A handler gets the payload (a plain dict, typed by the version's TypedDicts)
and returns the response payload; it may be sync or async. Raising
:class:`OcppError` answers with that error; any other exception answers
InternalError. The actions that have an ``@on`` handler are the supported
ones; a known action without one gets NotSupported.

An action has one ``@on`` handler (two in one class are refused: which one ran would
depend on their names). It may have several ``@after`` hooks, one per feature mixin
(reservations, tariffs and smart charging all follow a TransactionEvent): they run
one after the other, in the class's method resolution order, and one that fails does
not keep the others from running.
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from plugstream.ocpp.errors import ErrorCode, OcppError

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_ON = "_ocpp_on"
_AFTER = "_ocpp_after"

Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]


def _name(action: str | enum.Enum) -> str:
    return str(action.value) if isinstance(action, enum.Enum) else action


def on(action: str | enum.Enum) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a method as the handler of a received CALL of ``action``."""

    def mark(fn: Callable[P, R]) -> Callable[P, R]:
        setattr(fn, _ON, _name(action))
        return fn

    return mark


def after(action: str | enum.Enum) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a method to run after the answer to ``action`` has been sent."""

    def mark(fn: Callable[P, R]) -> Callable[P, R]:
        setattr(fn, _AFTER, _name(action))
        return fn

    return mark


class Handlers:
    """Base for a class whose methods carry ``@on`` / ``@after`` marks.

    The action tables are built once per class and methods are bound on lookup:
    a server holds one Handlers object per connection, so nothing per action is
    allocated per connection.
    """

    def handler(self, action: str) -> Handler | None:
        """The ``@on`` handler of ``action``, bound to this object."""
        fn = _table(type(self), _ON).get(action)
        return fn.__get__(self) if fn is not None else None

    def after_handler(self, action: str) -> Handler | None:
        """The ``@after`` hooks of ``action``, bound to this object, as one callable."""
        fns = _after_table(type(self)).get(action)
        if not fns:
            return None
        if len(fns) == 1:
            bound: Handler = fns[0].__get__(self)
            return bound
        hooks = [fn.__get__(self) for fn in fns]

        async def run(received: dict[str, Any]) -> None:
            for hook in hooks:
                try:
                    await invoke(hook, received)
                except Exception:
                    log.exception("after-handler %s of %s failed", hook.__name__, action)

        return run

    def supported_actions(self) -> frozenset[str]:
        return frozenset(_table(type(self), _ON))

    async def before_call(self, action: str) -> None:
        """Runs before each ``@on`` handler; raise OcppError to refuse the CALL (e.g. before boot)."""


_TABLES: dict[tuple[type, str], dict[str, Any]] = {}


def _table(cls: type, mark: str) -> dict[str, Any]:
    found = _TABLES.get((cls, mark))
    if found is None:
        found = {}
        names: dict[str, str] = {}
        for name in dir(cls):
            action = getattr(getattr(cls, name, None), mark, None)
            if action is None:
                continue
            if action in names:
                # two methods for one action (mixins): which one ran would depend on
                # the order of their names, so it is refused when the class is first used
                raise TypeError(
                    f"{cls.__name__} has two @on handlers for {action}: {names[action]} and {name}"
                )
            names[action] = name
            found[action] = getattr(cls, name)
        _TABLES[(cls, mark)] = found
    return found


_AFTER_TABLES: dict[type, dict[str, tuple[Any, ...]]] = {}


def _after_table(cls: type) -> dict[str, tuple[Any, ...]]:
    """Every ``@after`` hook per action, in method resolution order (an override by
    name counts once, as the subclass's)."""
    found = _AFTER_TABLES.get(cls)
    if found is None:
        hooks: dict[str, list[Any]] = {}
        seen: set[str] = set()
        for klass in cls.__mro__:
            for name in vars(klass):
                if name in seen:
                    continue
                seen.add(name)
                action = getattr(getattr(cls, name, None), _AFTER, None)
                if action is not None:
                    hooks.setdefault(action, []).append(getattr(cls, name))
        found = {action: tuple(fns) for action, fns in hooks.items()}
        _AFTER_TABLES[cls] = found
    return found


async def invoke(handler: Handler, payload: dict[str, Any]) -> Any:
    """Run a sync or async handler."""
    out = handler(payload)
    if inspect.isawaitable(out):
        out = await out
    return out


async def dispatch(handlers: Handlers, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The response payload for a received CALL, or OcppError with the code to answer."""
    handler = handlers.handler(action)
    if handler is None:
        raise OcppError(ErrorCode.NotSupported, f"{action} is not supported here")
    await handlers.before_call(action)
    try:
        response = await invoke(handler, payload)
    except OcppError:
        raise
    except Exception as exc:
        raise OcppError(
            ErrorCode.InternalError, f"{action} handler failed: {type(exc).__name__}"
        ) from exc
    if not isinstance(response, dict):
        raise OcppError(ErrorCode.InternalError, f"{action} handler returned no payload")
    return response
