"""The exception hierarchy: one root, leaves that also inherit the builtin they resemble."""

from __future__ import annotations


class PlendError(Exception):
    """Root of every error plend raises on purpose."""


class ConfigError(PlendError, ValueError):
    """A configuration value or option is invalid; the message names the key and value."""


class MissingDependencyError(PlendError, ImportError):
    """An optional dependency is not installed; the message names the install command."""


class HalError(PlendError, RuntimeError):
    """A hardware or simulation backend failed."""


def require_package(module: str, extra: str) -> None:
    """Import ``module`` or raise an error naming the install command for ``extra``."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: "
            f".venv/bin/pip install -e '.[{extra}]' (or ./install.sh --dev)"
        ) from exc


class ConnectionLostError(PlendError, ConnectionError):
    """The daemon went away in the middle of a conversation with a client."""
