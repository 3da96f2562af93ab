//! Durable state in embedded SQLite (WAL) under the state directory. Every change a caller is
//! told about is committed here first. The schema is versioned by `PRAGMA user_version` and
//! migrated forward; a file from a newer berth is refused, never rewritten.
//!
//! Holds task definitions, tasks, and facts about the host berthd last ran on (`meta`).

mod migrations;
mod tags;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

pub use tags::{Tag, Tagged};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path} is not a berth state database ({cause}); it was left untouched: restore it from \
         a backup, or move it away to start with no definitions and no tasks"
    )]
    Damaged {
        path: PathBuf,
        // Not `source`: the message already says it, once.
        cause: rusqlite::Error,
    },
    #[error(
        "the state database {path} has schema version {found}, newer than this berthd knows ({known}); \
         run the berthd that wrote it, or move the file away to start empty"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("state database {path}: cannot {action}: the disk is full; nothing recorded before was lost, and berth takes no new work until space is freed there")]
    Full { path: PathBuf, action: &'static str },
    #[error("state database {path}: {action}")]
    Query {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

/// One stored revision of a task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDefinition {
    pub family: String,
    pub revision: u32,
    pub active: bool,
    pub json: String,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `state_dir/berth.db` and brings its schema up to date.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join("berth.db");
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        // The first read of the header tells a damaged file before anything is written to it.
        conn.pragma_query_value(None, "schema_version", |r| r.get::<_, i64>(0))
            .map_err(|source| match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                    StoreError::Damaged {
                        path: path.clone(),
                        cause: source,
                    }
                }
                _ => open_err(source),
            })?;
        let mut store = Store { conn, path };
        // Refused before the journal mode is set: a newer berth's file is not written to.
        let found = store.refuse_newer()?;
        let conn = &store.conn;
        let open_err = |source| StoreError::Open {
            path: store.path.clone(),
            source,
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        store.migrate(found)?;
        Ok(store)
    }

    fn query_err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full {
                path: self.path.clone(),
                action,
            },
            _ => StoreError::Query {
                path: self.path.clone(),
                action,
                source,
            },
        }
    }

    /// The state directory, as the store was opened in.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// Bytes free to berthd (root) on the state directory's filesystem; `None` when the
    /// kernel does not say.
    pub fn free_bytes(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(self.dir()).ok()?;
        Some((st.blocks_free() as u64).saturating_mul(st.fragment_size() as u64))
    }

    /// The file's schema version, unless a newer berth wrote it.
    fn refuse_newer(&self) -> Result<i64, StoreError> {
        let found: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.query_err("read the schema version"))?;
        let known = migrations::LATEST;
        if found > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
                known,
            });
        }
        Ok(found)
    }

    fn migrate(&mut self, found: i64) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Query {
                path: path.clone(),
                action: "begin a migration",
                source,
            })?;
        for (version, sql) in migrations::STEPS.iter().filter(|(v, _)| *v > found) {
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", version))
                .map_err(|source| StoreError::Query {
                    path: path.clone(),
                    action: "migrate the schema",
                    source,
                })?;
        }
        tx.commit().map_err(|source| StoreError::Query {
            path,
            action: "commit a migration",
            source,
        })
    }

    /// The next revision number of `family` (1 for a new family).
    pub fn next_revision(&self, family: &str) -> Result<u32, StoreError> {
        let max: Option<u32> = self
            .conn
            .query_row(
                "SELECT MAX(revision) FROM task_definitions WHERE family = ?1",
                params![family],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.query_err("read the latest revision"))?
            .flatten();
        Ok(max.unwrap_or(0) + 1)
    }

    pub fn insert_definition(&self, d: &StoredDefinition) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO task_definitions (family, revision, active, json) VALUES (?1, ?2, ?3, ?4)",
                params![d.family, d.revision, d.active, d.json],
            )
            .map_err(self.query_err("record a task definition"))?;
        Ok(())
    }

    pub fn deactivate_definition(&self, family: &str, revision: u32) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE task_definitions SET active = 0 WHERE family = ?1 AND revision = ?2",
                params![family, revision],
            )
            .map_err(self.query_err("deregister a task definition"))?;
        Ok(())
    }

    /// Records a task's whole state (JSON), replacing what was there.
    pub fn put_task(&self, id: &str, state: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO tasks (id, state) VALUES (?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state",
                params![id, state],
            )
            .map_err(self.query_err("record a task"))?;
        Ok(())
    }

    /// Forgets a task (a stopped one past its retention).
    pub fn delete_task(&self, id: &str) -> Result<(), StoreError> {
        self.delete_with_tags(
            "DELETE FROM tasks WHERE id = ?1",
            id,
            &Tagged::Task(id.to_string()),
            "forget a task",
        )
    }

    /// A fact berthd keeps about itself (such as the boot it last ran in).
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.query_err("read a fact about the last run"))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(self.query_err("record a fact about this run"))?;
        Ok(())
    }

    /// Every recorded task as (id, state JSON).
    pub fn tasks(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, state FROM tasks ORDER BY id")
            .map_err(self.query_err("list tasks"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.query_err("list tasks"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_err("read a task"))
    }

    /// Records a service's whole state (JSON), replacing what was there.
    pub fn put_service(&self, name: &str, state: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO services (name, state) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET state = excluded.state",
                params![name, state],
            )
            .map_err(self.query_err("record a service"))?;
        Ok(())
    }

    pub fn delete_service(&self, name: &str) -> Result<(), StoreError> {
        self.delete_with_tags(
            "DELETE FROM services WHERE name = ?1",
            name,
            &Tagged::Service(name.to_string()),
            "delete a service",
        )
    }

    /// Every recorded service as (name, state JSON).
    pub fn services(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, state FROM services ORDER BY name")
            .map_err(self.query_err("list services"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.query_err("list services"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_err("read a service"))
    }

    pub fn definitions(&self) -> Result<Vec<StoredDefinition>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT family, revision, active, json FROM task_definitions ORDER BY family, revision")
            .map_err(self.query_err("list task definitions"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredDefinition {
                    family: r.get(0)?,
                    revision: r.get(1)?,
                    active: r.get(2)?,
                    json: r.get(3)?,
                })
            })
            .map_err(self.query_err("list task definitions"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_err("read a task definition"))
    }
}

#[cfg(test)]
mod tests;
