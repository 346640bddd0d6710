"""The Back Market seller API: the endpoints (``client``) over one authenticated,
retrying, paced session (``transport``), the request limits and hourly budget (``limits``),
the typed answer models (``answers``) and the reading of a batch task's result
(``taskresult``).

Must not import publish, pipeline, orders, market, alerts, catalog, planning or cli.
"""
