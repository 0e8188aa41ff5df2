"""A consistent copy of a live SQLite database (WAL, written by running instances): the backup API.

Usage: python3 snapshot.py SOURCE DEST. The copy is made beside DEST and renamed over it, and is a
rollback-journal file (not WAL), so the controller can open it without -wal/-shm companions. Prints one
JSON line: the copy's size and SHA-256. Standard library only: it runs with the node's system python3.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys


def snapshot(source: str, dest: str) -> dict[str, object]:
    tmp = dest + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    src = sqlite3.connect("file:" + source + "?mode=ro", uri=True, timeout=30)
    try:
        src.execute("PRAGMA busy_timeout = 30000")
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()
    with open(tmp, "rb") as fh:
        data = fh.read()
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: snapshot.py SOURCE DEST")
    print(json.dumps(snapshot(sys.argv[1], sys.argv[2])))
