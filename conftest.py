"""Enables the lab's pytest plugin for tests/ and scenarios/."""

pytest_plugins = ["lab.pytest_plugin"]
