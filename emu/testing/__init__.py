"""Emulation suites: boots described as tests, and the pytest plugin that runs them.

:mod:`emu.testing.boot` (options, runs, a machine stopped at a place),
:mod:`emu.testing.assertions` (helpers whose failures show findings and
timeline, golden timelines), :mod:`emu.testing.reports` (per-test report
files) and :mod:`emu.testing.plugin` (fixtures, the ``bootemu`` marker,
options).  Users import them through the :mod:`bootemu` package.

This package imports none of its modules: the plugin registers
:mod:`emu.testing.assertions` for pytest's assertion rewriting before it is
first imported, which an import here would come ahead of.
"""
