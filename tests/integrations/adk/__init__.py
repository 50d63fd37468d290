"""Tests of the Google ADK session service (a package, so that its conftest is not the suite's ``conftest``)."""
