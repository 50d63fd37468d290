"""Adapters that plug the store into agent frameworks, one module per framework, each behind its own extra.

Nothing in the core package imports these modules; each imports only the public ``eventstore`` API and its
framework, so ``import eventstore`` never loads a framework.
"""
