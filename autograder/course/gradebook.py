"""The gradebook's database: the course's SQLite file by default, a PostgreSQL server for a course that several
grading machines (or several grade commands at once) write to.

``postgresql://user:password@host:5432/course`` is read with the psycopg (3) driver: ``pip install -e '.[postgres]'``.
The server is checked before anything is graded, so a wrong address costs seconds, not a batch.
"""
from __future__ import annotations

from pathlib import Path

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
CONNECT_TIMEOUT_S = 10


def database_url(url: str | None, root: Path) -> str:
    """The SQLAlchemy URL nbgrader gets: ``sqlite:///<root>/gradebook.db`` by default; a PostgreSQL URL without a
    driver gets psycopg 3's (SQLAlchemy would otherwise look for psycopg2)."""
    if not url:
        return f"sqlite:///{root / 'gradebook.db'}"
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def is_postgres(url: str) -> bool:
    return url.partition("://")[0] in POSTGRES_SCHEMES


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given; its error says the rest
        return url


def require_reachable(url: str) -> None:
    """Connect once; SystemExit with what is wrong and what to do if the gradebook cannot be opened."""
    if is_postgres(url):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise SystemExit("a postgresql:// gradebook needs the psycopg driver: pip install -e '.[postgres]' "
                             "(or pip install 'psycopg[binary]'). No submission was graded.") from None
    from sqlalchemy import create_engine, exc
    options = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if is_postgres(url) else {}
    try:
        engine = create_engine(url, **options)
    except (exc.ArgumentError, ImportError) as error:
        raise SystemExit(f"--db {shown(url)} is not a database URL nbgrader can use ({error}); use "
                         "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    try:
        with engine.connect():
            pass
    except exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise SystemExit(f"cannot open the gradebook {shown(url)}: {reason}. Start the database server (or fix the "
                         "host, port, database name, user or password in --db), or leave --db out to grade into the "
                         "course's SQLite gradebook. No submission was graded.") from None
    finally:
        engine.dispose()
