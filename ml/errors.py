"""Typed errors raised by the ML core.

Every error carries a stable machine-readable ``code``, a human ``message`` and a
JSON-serialisable ``details`` dict, so the web layer can map it to
``{"error": {"code", "message", "details"}}`` with a 4xx status without knowing
which module raised it.

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "MLError",
    "InvalidInput",
    "UnsupportedFormat",
    "CorruptData",
    "TooLarge",
    "EmptyData",
    "MissingDependency",
    "require",
]


class MLError(Exception):
    """Base class of every error raised on purpose by ``ml``."""

    code = "ml_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            # instance attribute shadows the class default
            self.code = code
        self.details = dict(details) if details else {}

    def to_dict(self) -> dict:
        """``{"code", "message", "details"}``, ready for an API error body."""
        return {"code": self.code, "message": self.message, "details": dict(self.details)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, details={self.details!r})"


class InvalidInput(MLError):
    """The caller's input cannot be used (bad shape, bad value, bad file)."""

    code = "invalid_input"


class UnsupportedFormat(InvalidInput):
    """The content is a format we do not accept (detected by content, not by name)."""

    code = "unsupported_format"


class CorruptData(InvalidInput):
    """The content claims a supported format but is truncated or undecodable."""

    code = "corrupt_data"


class TooLarge(InvalidInput):
    """Pixel bomb, audio too long, too many points."""

    code = "too_large"


class EmptyData(InvalidInput):
    """Nothing usable inside: empty cloud, silent or empty audio, NaN values."""

    code = "empty_data"


class MissingDependency(MLError):
    """An optional package is not installed; ``details["install"]`` says how to get it."""

    code = "missing_dependency"


def require(
    module: str,
    message: str,
    *,
    install: str,
    package: str | None = None,
    catch: tuple[type[BaseException], ...] = (ImportError,),
) -> ModuleType:
    """Import ``module`` (a dotted name) and return it; :class:`MissingDependency` when it cannot be imported.

    ``message`` says what needs it (e.g. "faiss is required for embedding search and clustering"),
    ``install`` how to get it; the error's ``details`` hold ``package`` (default: the top-level module
    name), ``install`` and ``reason`` (the import error's text). ``catch`` widens what counts as
    missing (e.g. ``(ImportError, OSError)`` for a package whose shared library may be absent).
    """
    try:
        return importlib.import_module(module)
    except catch as exc:
        raise MissingDependency(
            message,
            details={"package": package or module.split(".")[0], "install": install, "reason": str(exc)},
        ) from exc
