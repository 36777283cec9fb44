-- Sync rules: how and when one connection's object is synced (src/rules).
CREATE TABLE sync_rules (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id   uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    provider        text NOT NULL,
    object          text NOT NULL,
    -- the validated, normalised rule (providers/rule.schema.json)
    rule            jsonb NOT NULL,
    -- bumped by every save, in the UPDATE itself; part of the planner's job key
    revision        integer NOT NULL CHECK (revision >= 1),
    -- when the planner next queues a sync; NULL while the rule is disabled
    next_run_at     timestamptz,
    last_planned_at timestamptz,
    -- a rule outlives the admin who wrote it
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (connection_id, object)
);
CREATE INDEX sync_rules_workspace_idx ON sync_rules (workspace_id, provider, object);
CREATE INDEX sync_rules_due_idx ON sync_rules (next_run_at) WHERE next_run_at IS NOT NULL;
