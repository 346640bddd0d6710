"""Publication: a store's plan sent through the API and every outcome recorded as it
arrives (``publisher`` routes each change to the ``realtime`` or the ``batches`` lane, which
settle through ``readback`` and write through the ``outcomes`` ledger; ``price_moves``
keeps the price moves Back Market confirmed), product proposals (``products``) and
reconciliation with what Back Market shows (``reconcile``).

Must not import pipeline, orders, market, alerts or cli: the pipeline hands it its client,
budget and lease.
"""
