"""The state database: what was confirmed on Back Market, runs, locks, batches, orders.

``store.StateStore`` opens it and composes one small store per concern (``offers``,
``queue``, ``budget``, ``pace``, ``products``, ``orders``, ``batches``, ``runs``,
``locks``, ``status``, ``alerts``, ``market``) over one ``database.Database``; the tables are
in ``schema``, the Alembic revisions in ``migrations``. Imports only ``syncer.core``,
``syncer.config`` and ``syncer.errors``: never planning, publish, the CLI or the emulator.
"""
