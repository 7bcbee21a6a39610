"""Fixtures shared by the probe tests: declared here once, so that test modules need not import
them by name (an imported fixture looks unused, then redefined, to a linter)."""

from probe_helpers import small_suite, tiny_qwen  # noqa: F401 - fixtures, found by pytest in this namespace
