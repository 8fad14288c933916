"""Errors a user can act on. The CLI prints their message as one line, never a traceback."""

from __future__ import annotations


class DimsumError(Exception):
    """Base class: the message names the problem and the fix."""


class RecipeError(DimsumError):
    """A recipe or a `key=value` override is wrong."""


class UnknownComponentError(DimsumError):
    """A registry name that no plugin provides."""


class PluginError(DimsumError):
    """Plugins that cannot be used together (two claim the same name)."""


class CheckpointError(DimsumError):
    """A checkpoint that is missing, truncated or does not fit the model."""


class DataError(DimsumError):
    """A dataset that is missing, empty or unreadable."""


class ScanError(DimsumError):
    """A scan order that cannot cover the requested token grid."""
