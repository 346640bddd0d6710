"""The state schema's Alembic revisions (``versions/``), run in code by ``syncer.state.version``.

No ``alembic.ini`` and no ``env.py``: the publishing commands run them. Tables are created
from ``syncer.state.schema`` (a new table needs no revision); a revision changes tables that
exist. Imports nothing of the syncer but its schema.
"""
