"""One Alembic revision per state schema version N: ``schema_N_*.py``, ``revision = "000N"``."""
