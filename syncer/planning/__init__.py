"""The pure stages: mapping profiles (``mapping``, ``sources``), cell and row validation
(``cells``, ``validation``), pricing (``pricing_rules``: the profile's rules; ``pricing``:
one offer's price decision; ``pricing_plan``: the decisions of a store's plan),
reservations, the diff against the snapshot (``diff``, ``changes``), the plan as a value
(``plan``) and the queue behind the hourly budget with its drain time (``queue``). No I/O
of their own: the state reaches them as an argument.

Must not import an I/O package (state, backmarket, publish, pipeline, catalog, orders,
market, alerts, reports, emulator, cli): tests/test_architecture.py enforces it.
"""
