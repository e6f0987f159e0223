"""Registers the shared fixtures of tests/support (see support/fixtures.py) for every test."""

pytest_plugins = ["support.fixtures"]
