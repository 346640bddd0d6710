"""The schema version of a state database: checked on every open, brought to head on a
publishing open by the Alembic revisions of ``syncer.state.migrations``.

Two records say the version: Alembic's ``alembic_version`` (revision ``"000N"`` for schema
N) and ``schema_info.schema_version`` (N), which syncers before Alembic read and which is
kept in step, so that they too refuse a newer database. A database without
``alembic_version`` was made before Alembic: it is adopted (stamped at its schema_info
version, nothing else changes) and upgraded from there. Alembic is imported only when there
is something to stamp or upgrade: ``plan`` (read-only) and an open of a current database
never load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from sqlalchemy import inspect, select
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from syncer.errors import StateError
from syncer.state.database import Database, safe_url, state_error
from syncer.state.schema import ALEMBIC_VERSION, MARKET_TABLES, METADATA, SCHEMA, TABLES

SCHEMA_VERSION: Final = 4  # the head of syncer/state/migrations/versions
HEAD: Final = f"{SCHEMA_VERSION:04d}"
MIGRATIONS: Final = Path(__file__).with_name("migrations")


def revision_of(version: int) -> str:
    return f"{version:04d}"


def check(db: Database) -> None:
    """Refuse a database this syncer cannot use: damaged, newer, or (read-only) older.
    Marks ``db.empty`` when the database has no state yet."""
    with db.read() as conn:
        if not inspect(conn).has_table(SCHEMA.name):
            db.empty = True
            return
        found, revision = _recorded(conn)
    db.empty = False
    where = safe_url(db.url)
    if found is not None and not str(found).isdigit():  # hand-edited or damaged
        raise StateError(
            f"the state database {where} is damaged: schema_info.schema_version is "
            f"{found!r}, expected a whole number (at most {SCHEMA_VERSION}); restore it from "
            "a backup")
    if found is not None and int(found) > SCHEMA_VERSION:
        raise StateError(
            f"the state database {where} has schema version {found}, newer than this "
            f"syncer understands ({SCHEMA_VERSION}); upgrade the syncer")
    if revision is not None and not (revision.isdigit() and len(revision) == len(HEAD)
                                     and int(revision) <= SCHEMA_VERSION):
        raise StateError(
            f"the state database {where} has schema revision {revision!r}, newer than this "
            f"syncer understands ({HEAD}); upgrade the syncer")
    current = _current(found, revision)
    if current is not None and current < SCHEMA_VERSION and db.readonly:
        raise StateError(
            f"the state database {where} has the older schema version {current}; "
            f"`syncer apply` or `syncer run` upgrades it (to {SCHEMA_VERSION})")


def ensure(db: Database) -> None:
    """Create what is missing and bring the schema to head (a publishing open)."""
    assert db.engine is not None
    check(db)
    try:
        METADATA.create_all(db.engine, tables=[*TABLES, *MARKET_TABLES])
        with db.engine.begin() as conn:
            found, revision = _recorded(conn)
            if found != str(SCHEMA_VERSION) or revision != HEAD:  # else: Alembic not loaded
                # Created just now: at head. Made before Alembic: adopted at its version.
                start = HEAD if found is None else revision_of(int(found))
                _alembic(conn, stamp=start if revision is None else None)
                _record_head(conn, found)
    except IntegrityError:
        pass  # another process created it at the same instant
    except SQLAlchemyError as exc:
        raise state_error(db.url, exc) from None
    db.empty = False


def alembic_head() -> str:
    """The head revision of the shipped scripts (a test holds ``HEAD`` to it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def _recorded(conn: Any) -> tuple[str | None, str | None]:
    """(schema_info.schema_version, alembic_version.version_num), each None when absent."""
    found = conn.execute(select(SCHEMA.c.value).where(
        SCHEMA.c.key == "schema_version")).scalar()
    revision = None
    if inspect(conn).has_table(ALEMBIC_VERSION.name):
        revision = conn.execute(select(ALEMBIC_VERSION.c.version_num)).scalar()
    return found, revision


def _record_head(conn: Any, found: str | None) -> None:
    if found is None:
        conn.execute(SCHEMA.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
    else:
        conn.execute(sa_update(SCHEMA).where(SCHEMA.c.key == "schema_version")
                     .values(value=str(SCHEMA_VERSION)))


def _current(found: str | None, revision: str | None) -> int | None:
    if revision is not None:
        return int(revision)
    return None if found is None else int(found)


def _alembic(conn: Any, *, stamp: str | None) -> None:
    """Stamp ``stamp`` when the database has no Alembic revision yet, then run every
    revision above the current one, each stamped as it completes, in the caller's
    transaction."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS))
    context = MigrationContext.configure(conn, opts={"version_table": ALEMBIC_VERSION.name})
    if stamp is not None and context.get_current_revision() is None:
        context.stamp(scripts, stamp)
    current = context.get_current_revision()
    steps = [step for step in scripts.iterate_revisions(HEAD, current)
             if step.revision != current]
    with Operations.context(context):
        for step in reversed(steps):
            step.module.upgrade()
            context.stamp(scripts, step.revision)

