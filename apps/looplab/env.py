"""Settings from the environment, through one helper that fails loudly.

Every setting Looplab reads from the environment goes through :func:`env`. A required value that is
missing, or a value that does not parse, raises ``ImproperlyConfigured`` naming the variable, so a
misconfigured deployment stops at start-up instead of misbehaving later.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from django.core.exceptions import ImproperlyConfigured

REQUIRED = object()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _to_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def _to_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


CASTS: dict[type | str, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    bool: _to_bool,
    list: _to_list,
}


def env(name: str, default: Any = REQUIRED, cast: type | str = str) -> Any:
    """Read ``name`` from the environment, cast it, or fail loudly.

    ``default`` is returned as is (not cast) when the variable is unset; without a default the
    variable is required.
    """
    raw = os.environ.get(name)
    if raw is None:
        if default is REQUIRED:
            raise ImproperlyConfigured(f"Environment variable {name} is required but not set.")
        return default
    try:
        return CASTS[cast](raw)
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not a valid {getattr(cast, '__name__', cast)}: {exc}") from exc
