"""Evaluation: outcome datasets, routing metrics, offline replay, reports, shadow checks, layer swap."""
