"""The pure stages: mapping profiles (``mapping``, ``sources``), cell and row validation
(``cells``, ``validation``), pricing rules (``pricing``), reservations, the diff against the
snapshot (``diff``, ``changes``) and the plan as a value (``plan``). No I/O of their own.

Must not import an I/O package (state, backmarket, publish, pipeline, catalog, orders,
market, alerts, reports, emulator, cli): tests/test_architecture.py enforces it.
"""
