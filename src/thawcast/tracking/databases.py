"""Database URLs of the team stores (Optuna's RDB storage, MLflow without a tracking server): driver options and
what to say when a driver is missing."""

from __future__ import annotations

#: What to do when a database URL's driver is missing: the one ``.[team]`` installs, named in the URL (a bare
#: ``postgresql://`` means psycopg 3 to SQLAlchemy 2.1).
POSTGRES_DRIVER = "for PostgreSQL write postgresql+psycopg2://... and pip install -e '.[team]'"

#: Seconds a database driver may take to connect (:func:`connect_args`).
CONNECT_TIMEOUT_S = 10


def connect_args(url: str) -> dict:
    """Driver options for a database URL: a connect timeout for PostgreSQL and MySQL, whose drivers otherwise
    wait as long as the operating system does (minutes, for a host that drops packets); none for others."""
    return {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith(("postgresql", "mysql")) else {}
