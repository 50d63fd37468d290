"""Tests of the OpenAI Agents SDK adapter (a package, so that its conftest does not shadow tests/conftest.py)."""
