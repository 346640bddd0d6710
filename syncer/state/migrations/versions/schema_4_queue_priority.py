"""Schema 4: ``offer_queue.priority``, the sending priority of a queued offer (0 zero, 1
stock, 2 other update, 3 new listing), for the queue's drain estimate in status and plan.
Rows queued before it have none (shown as ``unknown``)."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE offer_queue ADD COLUMN priority INTEGER
    op.add_column("offer_queue", sa.Column("priority", sa.Integer()))
