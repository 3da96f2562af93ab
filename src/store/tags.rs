//! Tags: key-value pairs an operator puts on the cluster, the host, a task definition, a task
//! or a service, kept beside them and forgotten with them.

use rusqlite::params;

use super::{Store, StoreError};

/// One tag, in ECS's shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// What a tag is put on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tagged {
    Cluster,
    /// The host, the cluster's one container instance.
    Instance,
    /// `family:revision`.
    Definition(String),
    /// A task's id.
    Task(String),
    /// A service's name.
    Service(String),
}

impl Tagged {
    /// The row's key: one namespace per kind, so a task and a service of one name differ.
    fn key(&self) -> String {
        match self {
            Tagged::Cluster => "cluster".into(),
            Tagged::Instance => "container-instance".into(),
            Tagged::Definition(r) => format!("task-definition/{r}"),
            Tagged::Task(id) => format!("task/{id}"),
            Tagged::Service(name) => format!("service/{name}"),
        }
    }
}

impl Store {
    /// The tags on `on`, by key.
    pub fn tags(&self, on: &Tagged) -> Result<Vec<Tag>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM tags WHERE resource = ?1 ORDER BY key")
            .map_err(self.query_err("list tags"))?;
        let rows = stmt
            .query_map(params![on.key()], |r| {
                Ok(Tag {
                    key: r.get(0)?,
                    value: r.get(1)?,
                })
            })
            .map_err(self.query_err("list tags"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_err("read a tag"))
    }

    /// Puts `tags` on `on` in one transaction, replacing the values of keys it had.
    pub fn put_tags(&self, on: &Tagged, tags: &[Tag]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.query_err("tag a resource"))?;
        for t in tags {
            tx.execute(
                "INSERT INTO tags (resource, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(resource, key) DO UPDATE SET value = excluded.value",
                params![on.key(), t.key, t.value],
            )
            .map_err(self.query_err("tag a resource"))?;
        }
        tx.commit().map_err(self.query_err("tag a resource"))
    }

    /// Takes the tags with `keys` off `on`; a key it lacks is no error.
    pub fn remove_tags(&self, on: &Tagged, keys: &[String]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.query_err("untag a resource"))?;
        for k in keys {
            tx.execute(
                "DELETE FROM tags WHERE resource = ?1 AND key = ?2",
                params![on.key(), k],
            )
            .map_err(self.query_err("untag a resource"))?;
        }
        tx.commit().map_err(self.query_err("untag a resource"))
    }

    /// Runs `delete` (of the row keyed `key`) and forgets `on`'s tags in one transaction, so
    /// no tag outlives its object to land on the next one of its name.
    pub(super) fn delete_with_tags(
        &self,
        delete: &str,
        key: &str,
        on: &Tagged,
        action: &'static str,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.query_err(action))?;
        tx.execute(delete, params![key])
            .map_err(self.query_err(action))?;
        tx.execute("DELETE FROM tags WHERE resource = ?1", params![on.key()])
            .map_err(self.query_err(action))?;
        tx.commit().map_err(self.query_err(action))
    }
}
