"""Schema 3: what Back Market says (error codes, request ids) is kept in full.

A code longer than VARCHAR(64) stopped whole runs on PostgreSQL. SQLite does not enforce
the length: nothing to do there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    # ALTER TABLE <table> ALTER COLUMN <column> TYPE TEXT
    for table, column in (("offer_snapshot", "error_code"), ("offer_snapshot", "request_id"),
                          ("order_line_action", "request_id")):
        op.alter_column(table, column, type_=sa.Text())
