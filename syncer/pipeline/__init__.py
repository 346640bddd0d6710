"""The flow of one command, stage by stage: plan a store (``planner``: catalog -> mapping ->
validation -> diff), run its jobs as recorded runs (``jobs``: offers, stock, reconcile,
products; ``market``: the BackBox pass and the market report), decide which jobs are due
(``schedule``, for ``run`` and ``daemon``) and show progress on a terminal (``progress``).

Imports the stages below it; imported only by ``syncer.orders`` and ``syncer.cli``.
"""
