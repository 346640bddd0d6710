"""The ``syncer`` command line, a thin layer: each module is one command group that parses
its options, calls the engine and renders the answer (``main`` holds the root group).

Must not import the engine (SQLAlchemy, pydantic, ``syncer.state``, ``syncer.emulator``) at
module level: `syncer --help` stays fast; the commands import what they use when they run.
"""
