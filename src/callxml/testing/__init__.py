"""Helpers for testing call flows offline (the simulator's Python API and pytest fixture)."""
