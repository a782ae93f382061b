"""The embedded log's schema and the statements of each operation (run in the writer thread).

``events`` is the log: one row per event, in one global sequence (``seq`` never goes back, even
after retention deletes the newest row, thanks to AUTOINCREMENT). A dead-letter topic is an
ordinary topic in it. ``groups`` holds each consumer group's cursor: the last event it has
taken into ``pending``, the rows it has taken but not acknowledged — each with its attempt
count, the time it becomes visible (a lease or a retry delay), the member holding it, and the
last error. A replayed dead letter is a pending row with its own copy of the event's bytes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from lumi.brokers.base import DeadLetter, dead_letter_topic
from lumi.brokers.log_consumer import Claimed, lease_expired_reason, unreadable_envelope
from lumi.model.envelope import Envelope, EnvelopeError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT,
    time REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_topic ON events (topic, seq);
CREATE TABLE IF NOT EXISTS groups (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    PRIMARY KEY (topic, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL DEFAULT 0,
    owner TEXT,
    error TEXT NOT NULL DEFAULT '',
    body BLOB,
    PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_key ON pending (topic, grp, key, seq);
CREATE TABLE IF NOT EXISTS processed (
    scope TEXT NOT NULL,
    event_id TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (scope, event_id)
) WITHOUT ROWID;
"""

WINDOW = 1000  # pending rows per group at most; the cursor advances as they are acknowledged


def setup(conn: sqlite3.Connection) -> None:
    """WAL mode (readers never block the writer), the schema, and a schema version check."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA journal_size_limit=67108864")
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the event log was written by a newer Lumi (schema {version}, this one knows "
            f"{SCHEMA_VERSION}); upgrade lumi-runtime"
        )
    if version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        for statement in _statements(SCHEMA):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def publish(conn: sqlite3.Connection, rows: Sequence[tuple[str, str | None, float, bytes]]) -> None:
    conn.executemany("INSERT INTO events (topic, key, time, body) VALUES (?, ?, ?, ?)", rows)


def last_seq(conn: sqlite3.Connection, topic: str) -> int:
    (seq,) = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE topic = ?", (topic,)
    ).fetchone()
    return int(seq)


def ensure_group(conn: sqlite3.Connection, topic: str, group: str, start: str) -> None:
    cursor = 0 if start == "earliest" else last_seq(conn, topic)
    conn.execute(
        "INSERT OR IGNORE INTO groups (topic, grp, cursor) VALUES (?, ?, ?)", (topic, group, cursor)
    )


def read(conn: sqlite3.Connection, topic: str, after: int, limit: int) -> list[tuple[int, bytes]]:
    return conn.execute(
        "SELECT seq, body FROM events WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
        (topic, after, limit),
    ).fetchall()


def _take_new(conn: sqlite3.Connection, topic: str, group: str) -> None:
    """Move events past the group's cursor into ``pending`` while the window has room."""
    row = conn.execute(
        "SELECT cursor FROM groups WHERE topic = ? AND grp = ?", (topic, group)
    ).fetchone()
    if row is None:
        return
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM pending WHERE topic = ? AND grp = ?", (topic, group)
    ).fetchone()
    room = WINDOW - count
    if room <= 0:
        return
    new = conn.execute(
        "SELECT seq, key FROM events WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
        (topic, row[0], room),
    ).fetchall()
    if new:
        conn.executemany(
            "INSERT OR IGNORE INTO pending (topic, grp, seq, key) VALUES (?, ?, ?, ?)",
            [(topic, group, seq, key) for seq, key in new],
        )
        conn.execute(
            "UPDATE groups SET cursor = ? WHERE topic = ? AND grp = ?", (new[-1][0], topic, group)
        )


# A pending row is eligible when it is visible and no earlier pending row has its key.
_ELIGIBLE = """
SELECT p.seq, p.attempts, p.error,
       COALESCE(p.body, (SELECT e.body FROM events e WHERE e.seq = p.seq))
FROM pending p
WHERE p.topic = ?1 AND p.grp = ?2 AND p.visible_at <= ?3
  AND (p.key IS NULL OR NOT EXISTS (
        SELECT 1 FROM pending q
        WHERE q.topic = ?1 AND q.grp = ?2 AND q.key = p.key AND q.seq < p.seq))
ORDER BY p.seq
LIMIT ?4
"""


def claim(
    conn: sqlite3.Connection,
    topic: str,
    group: str,
    member: str,
    limit: int,
    lease: float,
    max_attempts: int,
) -> tuple[list[Claimed], float | None, bool]:
    """Lease eligible events to ``member``: (claimed, next due time, whether any was
    dead-lettered because its last allowed attempt never reported back)."""
    _take_new(conn, topic, group)
    now = time.time()
    items: list[Claimed] = []
    dead = False
    for seq, attempts, error, body in conn.execute(
        _ELIGIBLE, (topic, group, now, limit)
    ).fetchall():
        if body is None:  # retention removed the event: nothing left to deliver
            conn.execute(
                "DELETE FROM pending WHERE topic = ? AND grp = ? AND seq = ?", (topic, group, seq)
            )
        elif attempts >= max_attempts:
            dead_letter(conn, topic, group, seq, lease_expired_reason(attempts, error))
            dead = True
        else:
            items.append(Claimed(seq, attempts + 1, body))
    conn.executemany(
        "UPDATE pending SET attempts = attempts + 1, owner = ?, visible_at = ? "
        "WHERE topic = ? AND grp = ? AND seq = ?",
        [(member, now + lease, topic, group, item.seq) for item in items],
    )
    next_due = None
    if len(items) < limit:
        (next_due,) = conn.execute(
            "SELECT MIN(visible_at) FROM pending WHERE topic = ? AND grp = ? AND visible_at > ?",
            (topic, group, now),
        ).fetchone()
    return items, next_due, dead


def ack(conn: sqlite3.Connection, topic: str, group: str, seqs: Sequence[int]) -> None:
    conn.executemany(
        "DELETE FROM pending WHERE topic = ? AND grp = ? AND seq = ?",
        [(topic, group, seq) for seq in seqs],
    )


def retry(
    conn: sqlite3.Connection, topic: str, group: str, member: str, seq: int, due: float, error: str
) -> None:
    conn.execute(
        "UPDATE pending SET owner = NULL, visible_at = ?, error = ? "
        "WHERE topic = ? AND grp = ? AND seq = ? AND owner = ?",
        (due, error, topic, group, seq, member),
    )


def release(
    conn: sqlite3.Connection, topic: str, group: str, member: str, seqs: Sequence[int]
) -> None:
    conn.executemany(
        "UPDATE pending SET owner = NULL, visible_at = 0, attempts = MAX(attempts - 1, 0) "
        "WHERE topic = ? AND grp = ? AND seq = ? AND owner = ?",
        [(topic, group, seq, member) for seq in seqs],
    )


def extend(
    conn: sqlite3.Connection,
    topic: str,
    group: str,
    member: str,
    seqs: Sequence[int],
    until: float,
) -> None:
    conn.executemany(
        "UPDATE pending SET visible_at = ? WHERE topic = ? AND grp = ? AND seq = ? AND owner = ?",
        [(until, topic, group, seq, member) for seq in seqs],
    )


def dead_letter(conn: sqlite3.Connection, topic: str, group: str, seq: int, reason: str) -> bool:
    """Move a pending event to the group's dead-letter topic; False if it was not pending."""
    row = conn.execute(
        "SELECT attempts, COALESCE(p.body, (SELECT e.body FROM events e WHERE e.seq = p.seq)) "
        "FROM pending p WHERE p.topic = ? AND p.grp = ? AND p.seq = ?",
        (topic, group, seq),
    ).fetchone()
    if row is None:
        return False
    attempts, body = row
    try:
        envelope = Envelope.from_json(body)
    except (EnvelopeError, TypeError):
        envelope = unreadable_envelope(topic, seq, body or b"")
    stored = envelope.dead_lettered(group=group, reason=reason, attempts=attempts)
    publish(
        conn,
        [(dead_letter_topic(topic, group), stored.partitionkey, time.time(), stored.to_json())],
    )
    conn.execute("DELETE FROM pending WHERE topic = ? AND grp = ? AND seq = ?", (topic, group, seq))
    return True


def _dead_letter_rows(
    conn: sqlite3.Connection, topic: str | None, group: str | None
) -> list[tuple[str, str, int, bytes]]:
    """(topic, group, seq, body) of every dead letter matching the filters, oldest first."""
    groups = conn.execute("SELECT topic, grp FROM groups").fetchall()
    rows: list[tuple[str, str, int, bytes]] = []
    for t, g in groups:
        if (topic and t != topic) or (group and g != group):
            continue
        rows.extend(
            (t, g, seq, body)
            for seq, body in conn.execute(
                "SELECT seq, body FROM events WHERE topic = ? ORDER BY seq",
                (dead_letter_topic(t, g),),
            )
        )
    rows.sort(key=lambda row: row[2])
    return rows


def dead_letters(
    conn: sqlite3.Connection, topic: str | None, group: str | None, limit: int
) -> list[DeadLetter]:
    letters = []
    for t, g, seq, body in _dead_letter_rows(conn, topic, group)[:limit]:
        try:
            stored = Envelope.from_json(body)
        except EnvelopeError:
            stored = unreadable_envelope(t, seq, body)
        letters.append(DeadLetter.from_envelope(t, g, stored))
    return letters


def replay(
    conn: sqlite3.Connection,
    topic: str | None,
    group: str | None,
    event_ids: Sequence[str] | None,
) -> tuple[int, set[str]]:
    """Give dead letters back to their groups as fresh pending rows: how many, and the
    topics whose consumers to wake."""
    wanted = None if event_ids is None else set(event_ids)
    woken: set[str] = set()
    count = 0
    for t, g, seq, body in _dead_letter_rows(conn, topic, group):
        try:
            envelope = Envelope.from_json(body).revived()
        except EnvelopeError:
            continue  # unreadable bytes stay in the dead-letter topic for a human to read
        if wanted is not None and envelope.id not in wanted:
            continue
        conn.execute(
            "INSERT OR REPLACE INTO pending (topic, grp, seq, key, body) VALUES (?, ?, ?, ?, ?)",
            (t, g, seq, envelope.partitionkey, envelope.to_json()),
        )
        conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
        woken.add(t)
        count += 1
    return count, woken


def retain(
    conn: sqlite3.Connection, *, max_age: float | None, max_events: int | None, now: float
) -> int:
    """Delete events older than ``max_age`` seconds and beyond ``max_events`` per topic
    (retention wins over a lagging group, as in Kafka); returns how many went."""
    deleted = 0
    if max_age is not None:
        row = conn.execute(
            "SELECT seq FROM events WHERE time >= ? ORDER BY seq LIMIT 1", (now - max_age,)
        ).fetchone()
        bound = row[0] if row is not None else last_any(conn) + 1
        deleted += conn.execute("DELETE FROM events WHERE seq < ?", (bound,)).rowcount
        conn.execute("DELETE FROM pending WHERE body IS NULL AND seq < ?", (bound,))
        conn.execute("DELETE FROM processed WHERE time < ?", (now - max_age,))
    if max_events is not None:
        for (topic,) in conn.execute(
            "SELECT topic FROM events GROUP BY topic HAVING COUNT(*) > ?", (max_events,)
        ).fetchall():
            (bound,) = conn.execute(
                "SELECT seq FROM events WHERE topic = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (topic, max_events),
            ).fetchone()
            deleted += conn.execute(
                "DELETE FROM events WHERE topic = ? AND seq <= ?", (topic, bound)
            ).rowcount
            conn.execute(
                "DELETE FROM pending WHERE topic = ? AND body IS NULL AND seq <= ?", (topic, bound)
            )
    return deleted


def last_any(conn: sqlite3.Connection) -> int:
    (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
    return int(seq)


def seen(conn: sqlite3.Connection, scope: str, event_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM processed WHERE scope = ? AND event_id = ?", (scope, event_id)
    ).fetchone()
    return row is not None


def mark(conn: sqlite3.Connection, scope: str, event_id: str) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO processed (scope, event_id, time) VALUES (?, ?, ?)",
        (scope, event_id, time.time()),
    )
