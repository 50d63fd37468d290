"""Adapters that plug the store into agent frameworks, one module per framework.

Each module imports its framework, which its optional extra installs (``pip install eventstore[adk]``, ...);
``import eventstore`` imports none of them.
"""
