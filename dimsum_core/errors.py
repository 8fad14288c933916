"""Errors a user can act on. The CLI prints their message as one line, never a traceback."""

from __future__ import annotations

import errno
import sys


class DimsumError(Exception):
    """Base class: the message names the problem and the fix. The CLI exits with ``exit_code``."""

    exit_code = 2


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


class OutputError(DimsumError):
    """A file or folder a command writes cannot be written (disk full, read-only, a file in the way)."""


def os_problem(exc: OSError) -> str:
    """What went wrong and what to do, in a few words."""
    what = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        return f"{what}: free disk space"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{what}: use a place you can write to"
    return what


def compile_problem(exc: BaseException) -> str | None:
    """A torch.compile failure (dynamo's or inductor's, raised where compiled code first runs) as one line
    with the way out; None for any other exception. Compiling is on by default on CUDA, so a model or plugin
    that does not compile must not end a run in a compiler traceback."""
    dynamo = sys.modules.get("torch._dynamo.exc")  # not imported: nothing was compiled
    if dynamo is None or not isinstance(exc, dynamo.TorchDynamoException):
        return None
    cause = getattr(exc, "inner_exception", None) or exc.__cause__  # what the backend raised, if it did
    what = type(exc).__name__ + (f": {type(cause).__name__}" if cause is not None else "")
    lines = str(cause if cause is not None else exc).strip().splitlines()
    if lines:
        what += f": {lines[0][:200]}"
    return (f"torch.compile failed ({what}); run without compiling: train.compile=false for `dimsum run`, "
            f"no --compile for `dimsum sample` and `dimsum bench`")
