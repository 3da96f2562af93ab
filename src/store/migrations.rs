//! Schema steps, applied in order inside one transaction; `user_version` records the last.
//! Never edit a released step: add the next one.

pub const STEPS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE task_definitions (
        family TEXT NOT NULL,
        revision INTEGER NOT NULL,
        active INTEGER NOT NULL,
        json TEXT NOT NULL,
        registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (family, revision)
    );",
    ),
    (
        2,
        "CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL
    );",
    ),
    (
        3,
        "CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    ),
    (
        4,
        "CREATE TABLE services (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL
    );",
    ),
    (
        5,
        "CREATE TABLE tags (
        resource TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (resource, key)
    );",
    ),
];

pub const LATEST: i64 = STEPS[STEPS.len() - 1].0;
