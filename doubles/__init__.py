"""Test doubles and fixtures for the tests and benchmarks; not part of the ceredis wheel.

The CaSS double (:mod:`doubles.cass_double`, its query engine and fixture builders), the
server's side of KBAC (:mod:`doubles.kbac`), the xAPI fixtures and the Ralph LRS harness.
Imported from the repository root (pytest's ``pythonpath``; the benchmarks put the root
on ``sys.path``).
"""
