"""The seller's catalog as rows: a CSV export (``files``) or a database table or query
(``sql``), and ``syncer init`` (``onboarding``, with ``columns`` naming an export's columns).

Imports ``syncer.planning`` (the mapping profile) and below; must not import the state,
the API client, publish, pipeline, orders, market, alerts or cli.
"""
