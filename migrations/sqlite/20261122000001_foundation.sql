-- SQLite twin of migrations/postgres: uuid → BLOB, timestamptz → TEXT (RFC 3339, UTC),
-- jsonb → TEXT. Foreign keys are enforced (sqlx turns PRAGMA foreign_keys on).

CREATE TABLE users (
    id               BLOB PRIMARY KEY,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    last_login_at    TEXT
);

CREATE TABLE organizations (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    created_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE workspaces (
    id              BLOB PRIMARY KEY,
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE memberships (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at   TEXT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE invites (
    id               BLOB PRIMARY KEY,
    workspace_id     BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    token_hash       BLOB NOT NULL UNIQUE,
    created_by       BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    accepted_at      TEXT,
    accepted_by      BLOB REFERENCES users (id) ON DELETE SET NULL,
    revoked_at       TEXT
);
CREATE UNIQUE INDEX invites_open_idx ON invites (workspace_id, email_normalized)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

CREATE TABLE sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    BLOB REFERENCES users (id) ON DELETE CASCADE,
    data       TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE audit_log (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB REFERENCES workspaces (id) ON DELETE CASCADE,
    actor_user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    action        TEXT NOT NULL,
    target_type   TEXT,
    target_id     TEXT,
    details       TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL
);
CREATE INDEX audit_log_workspace_idx ON audit_log (workspace_id, created_at DESC);
