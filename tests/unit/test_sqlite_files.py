"""Building an engine never opens the file of a database that may be in use: closing any
descriptor of it drops every POSIX lock the process's SQLite connections hold on it
(sqlite.org/howtocorrupt.html, 2.2), and a shared test database was corrupted that way once
several engines were built on one file (one `Databases` per container)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from assistant.core.db import _private_sqlite_files

READER = ("import sqlite3, sys\n"
          "conn = sqlite3.connect(sys.argv[1], timeout=0)\n"
          "try:\n"
          "    conn.execute('SELECT count(*) FROM t').fetchone()\n"
          "except sqlite3.OperationalError as exc:\n"
          "    print(exc)\n")


def test_an_engine_for_a_database_in_use_keeps_its_locks(tmp_path):
    path = tmp_path / "linli.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # rollback-journal mode: the lock is on the database file itself
    holder.execute("INSERT INTO t VALUES (1)")
    _private_sqlite_files(f"sqlite:///{path}")
    other = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True, timeout=30)
    holder.execute("ROLLBACK")
    assert "locked" in other.stdout, "another process could read past this process's exclusive lock"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_new_database_file_is_created_private(tmp_path):
    path = tmp_path / "new" / "linli.sqlite"
    _private_sqlite_files(f"sqlite:///{path}")
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
