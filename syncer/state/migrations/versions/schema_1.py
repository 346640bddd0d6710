"""Schema 1: the state as the first syncer made it, before ``offer_snapshot.source_hash``.

Nothing to run: a database made at schema 1 is stamped here when it is adopted (its
``schema_info.schema_version`` says 1); a new database is created at head.
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass
