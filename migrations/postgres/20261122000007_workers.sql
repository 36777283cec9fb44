-- Live workers, by heartbeat: sync requests are refused while none is alive.
CREATE TABLE workers (
    id           uuid PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
