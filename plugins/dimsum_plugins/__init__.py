"""The built-in components' registrations, one module per kind: each registers names for implementations
that live in :mod:`dimsum_core`. pyproject.toml lists these modules under the ``dimsum`` entry-point group
(``builtin-scans``, ...), the same way a third-party plugin is found, so anything a built-in can do, a
plugin can; ``DIMSUM_DISABLE_PLUGINS=builtin-scans`` blocks one kind's built-ins."""
