"""Publication: a store's plan sent through the API and every outcome recorded as it
arrives (``publisher`` routes each change to the ``realtime`` or the ``batches`` lane, which
settle through ``readback`` and write through the ``outcomes`` ledger), the confirmed
price moves kept for pricing (``price_moves``), product proposals (``products``) and
reconciliation with what Back Market shows (``reconcile``).

Must not import pipeline, orders, market, alerts or cli: the pipeline hands it its client,
budget and lease.
"""
