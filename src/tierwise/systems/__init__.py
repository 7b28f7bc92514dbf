"""The five ready systems, each a short composition of orchestration primitives.

Import one by name: ``from tierwise.systems import pr_review``.
"""
