"""Schema 2: ``offer_snapshot.source_hash``, the hash of the catalog row (and mapping) the
confirmed fields came from, so that an unchanged row is not validated again."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE offer_snapshot ADD COLUMN source_hash BIGINT
    op.add_column("offer_snapshot", sa.Column("source_hash", sa.BigInteger()))
