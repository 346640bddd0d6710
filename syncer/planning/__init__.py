"""The pure stages: mapping profiles (``mapping``, ``sources``), cell and row validation
(``cells``, ``validation``), pricing rules (``pricing``) and their use per store
(``pricing_plan``), reservations, the diff against the snapshot (``diff``, ``changes``), the
plan as a value (``plan``) and the queue behind the hourly budget (``queue``). No I/O of their
own: ``queue`` reads the state store its callers hand it.

Must not import an I/O package (state, backmarket, publish, pipeline, catalog, orders,
market, alerts, reports, emulator, cli): tests/test_architecture.py enforces it.
"""
