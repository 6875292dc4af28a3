-- The files attached to notes: the objects are in the S3 bucket (key notes/<note_id>/<name>), their
-- rows here say what was stored and its SHA-256.
CREATE TABLE attachments (
    note_id bigint NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    name text NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    content_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (note_id, name)
);
