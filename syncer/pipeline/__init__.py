"""The flow of one command, stage by stage: plan a store (``planner``: catalog -> mapping ->
validation -> diff), run its jobs as recorded runs (``jobs``: offers, stock, reconcile,
products), decide which jobs are due (``schedule``, for ``run`` and ``daemon``) and show
the progress of long steps on a terminal (``progress``).

Imports the stages below it; imported only by ``syncer.orders`` and ``syncer.cli`` (and,
until it is inverted, ``syncer.market.view``).
"""
