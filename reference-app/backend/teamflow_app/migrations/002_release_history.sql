-- One row per release whose migrations ran: which version, when, from which host.
CREATE TABLE release_history (
    version text PRIMARY KEY,
    migrated_at timestamptz NOT NULL DEFAULT now(),
    migrated_from text NOT NULL
);
