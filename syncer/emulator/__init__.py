"""A local emulator of the Back Market seller API (and of the parse.bot public-shop API), the
independent oracle the engine is tested and rehearsed against: ``emulator.Emulator`` composes
one part per concern (gateway, listings, tasks, products, orders, market, admin) over one
shared state; ``server.EmulatorServer`` serves it on a loopback port.

It must import nothing of syncer's engine (planning, publish, backmarket, state, pipeline,
catalog, config, market, orders, alerts, reports, cli): only ``syncer.core.vocabulary``,
which holds Back Market's own fixed vocabularies (markets, grades, shippers, field lengths).
"""
