"""Alerts: the problems of a store's turn that need a person (``events``), told once per
problem through webhook, Slack or email channels (``notify``).

Must not import pipeline (but for type names), orders, market or cli.
"""
