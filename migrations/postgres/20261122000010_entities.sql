-- Plugboard's own projects and people, fed from provider records through
-- per-object field mappings, and the links from external ids to them.

-- Per mapped field, `field_state` keeps {"source": <provider value>,
-- "edited": <changed locally since the source last wrote it>, "sourced":
-- <the source has written it>}: what the field policies decide on.
CREATE TABLE projects (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    number       text,
    name         text NOT NULL,
    client_name  text,
    status       text NOT NULL CHECK (status IN ('active', 'inactive')),
    start_date   date,
    end_date     date,
    field_state  jsonb NOT NULL DEFAULT '{}',
    -- soft delete (deletion policy soft_delete): hidden from the API
    deleted_at   timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    -- target of the links' composite key: a link can't cross workspaces
    UNIQUE (workspace_id, id)
);
CREATE INDEX projects_number_idx ON projects (workspace_id, number);
CREATE INDEX projects_name_idx ON projects (workspace_id, lower(name));

CREATE TABLE people (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         text NOT NULL,
    email        text,
    title        text,
    active       boolean NOT NULL,
    field_state  jsonb NOT NULL DEFAULT '{}',
    deleted_at   timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    UNIQUE (workspace_id, id)
);
CREATE INDEX people_email_idx ON people (workspace_id, lower(email));
CREATE INDEX people_name_idx ON people (workspace_id, lower(name));

-- One external record ↔ one local entity. Keyed without the connection, so
-- two connections can't claim one external id; one entity has at most one
-- link per provider object.
CREATE TABLE external_links (
    workspace_id       uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider           text NOT NULL,
    object             text NOT NULL,
    external_id        text NOT NULL,
    connection_id      uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    project_id         uuid,
    person_id          uuid,
    -- what was last applied: the record's content hash, its deletion state
    -- and the mapping's fingerprint (any change → applied again)
    applied_hash       text,
    applied_deleted    boolean NOT NULL DEFAULT false,
    applied_mapping    text,
    -- deletion policy mark_inactive_keep_link deactivated the entity
    inactive_by_source boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, provider, object, external_id),
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, person_id) REFERENCES people (workspace_id, id) ON DELETE CASCADE,
    CHECK ((project_id IS NULL) <> (person_id IS NULL)),
    UNIQUE (workspace_id, provider, object, project_id),
    UNIQUE (workspace_id, provider, object, person_id)
);
CREATE INDEX external_links_connection_idx ON external_links (connection_id);

-- A workspace's saved mapping of one provider object (absent: the
-- provider's mappingDefaults). `fields` is [{source, target, policy}].
CREATE TABLE mappings (
    workspace_id         uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider             text NOT NULL,
    object               text NOT NULL,
    target               text NOT NULL,
    fields               jsonb NOT NULL,
    version              integer NOT NULL,
    -- the catalog's fieldSignatureHash when saved; a different one now
    -- means the provider's fields changed
    field_signature_hash text NOT NULL,
    stale                boolean NOT NULL DEFAULT false,
    updated_by           uuid REFERENCES users (id) ON DELETE SET NULL,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, provider, object)
);
