-- See migrations/postgres: local projects and people, external links, mappings.
CREATE TABLE projects (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    number       TEXT,
    name         TEXT NOT NULL,
    client_name  TEXT,
    status       TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    start_date   TEXT,
    end_date     TEXT,
    field_state  TEXT NOT NULL DEFAULT '{}',
    deleted_at   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (workspace_id, id)
);
CREATE INDEX projects_number_idx ON projects (workspace_id, number);
CREATE INDEX projects_name_idx ON projects (workspace_id, lower(name));

CREATE TABLE people (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    email        TEXT,
    title        TEXT,
    active       INTEGER NOT NULL,
    field_state  TEXT NOT NULL DEFAULT '{}',
    deleted_at   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (workspace_id, id)
);
CREATE INDEX people_email_idx ON people (workspace_id, lower(email));
CREATE INDEX people_name_idx ON people (workspace_id, lower(name));

CREATE TABLE external_links (
    workspace_id       BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    object             TEXT NOT NULL,
    external_id        TEXT NOT NULL,
    connection_id      BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    project_id         BLOB,
    person_id          BLOB,
    applied_hash       TEXT,
    applied_deleted    INTEGER NOT NULL DEFAULT 0,
    applied_mapping    TEXT,
    inactive_by_source INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (workspace_id, provider, object, external_id),
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, person_id) REFERENCES people (workspace_id, id) ON DELETE CASCADE,
    CHECK ((project_id IS NULL) <> (person_id IS NULL)),
    UNIQUE (workspace_id, provider, object, project_id),
    UNIQUE (workspace_id, provider, object, person_id)
);
CREATE INDEX external_links_connection_idx ON external_links (connection_id);

CREATE TABLE mappings (
    workspace_id         BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider             TEXT NOT NULL,
    object               TEXT NOT NULL,
    target               TEXT NOT NULL,
    fields               TEXT NOT NULL,
    version              INTEGER NOT NULL,
    field_signature_hash TEXT NOT NULL,
    stale                INTEGER NOT NULL DEFAULT 0,
    updated_by           BLOB REFERENCES users (id) ON DELETE SET NULL,
    updated_at           TEXT NOT NULL,
    PRIMARY KEY (workspace_id, provider, object)
);
