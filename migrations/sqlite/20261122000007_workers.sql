CREATE TABLE workers (
    id           BLOB PRIMARY KEY,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
