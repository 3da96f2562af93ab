//! Registered task definitions: `family:revision`, revisions counting up per family, and the
//! references operators use (`family` for the latest active, `family:3` for one revision).

use std::collections::BTreeMap;

use crate::spec::{self, SpecError, TaskDefinition};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("task definition \"{0}\" is not registered")]
    NotFound(String),
    #[error("\"{0}\" is not a task definition reference (FAMILY or FAMILY:REVISION)")]
    BadReference(String),
    #[error("{0}")]
    Disk(#[from] crate::capacity::Refusal),
}

/// One registered revision.
#[derive(Debug, Clone)]
pub struct Registered {
    pub family: String,
    pub revision: u32,
    pub active: bool,
    pub definition: TaskDefinition,
    pub ignored: Vec<String>,
    pub json: serde_json::Value,
}

impl Registered {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.family, self.revision)
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    families: BTreeMap<String, Vec<Registered>>,
}

impl Registry {
    /// The revision the next registration of `family` gets.
    pub fn next_revision(&self, family: &str) -> u32 {
        self.families
            .get(family)
            .and_then(|revs| revs.iter().map(|r| r.revision).max())
            .unwrap_or(0)
            + 1
    }

    /// Registers the next revision of the definition's family.
    #[cfg(test)]
    pub fn register(&mut self, v: spec::Validated) -> Registered {
        let revision = self.next_revision(&v.definition.family);
        self.restore(revision, true, v)
    }

    /// Adds a revision whose number is already decided (by the store).
    pub fn restore(&mut self, revision: u32, active: bool, v: spec::Validated) -> Registered {
        let family = v.definition.family.clone();
        let revisions = self.families.entry(family.clone()).or_default();
        let reg = Registered {
            family,
            revision,
            active,
            definition: v.definition,
            ignored: v.ignored,
            json: v.json,
        };
        revisions.push(reg.clone());
        reg
    }

    /// Active revisions whose family starts with `prefix`, oldest first.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.list_by(prefix, true)
    }

    /// The references of the revisions that are `active` (or inactive), by family.
    pub fn list_by(&self, prefix: &str, active: bool) -> Vec<String> {
        self.families
            .iter()
            .filter(|(f, _)| f.starts_with(prefix))
            .flat_map(|(_, revs)| {
                revs.iter()
                    .filter(|r| r.active == active)
                    .map(Registered::reference)
            })
            .collect()
    }

    pub fn get(&self, reference: &str) -> Result<Registered, DefinitionError> {
        let (family, revision) = parse_reference(reference)?;
        let revs = self
            .families
            .get(family)
            .ok_or_else(|| DefinitionError::NotFound(reference.to_string()))?;
        let found = match revision {
            Some(n) => revs.iter().find(|r| r.revision == n),
            None => revs.iter().rev().find(|r| r.active),
        };
        found
            .cloned()
            .ok_or_else(|| DefinitionError::NotFound(reference.to_string()))
    }

    /// Marks one revision inactive (as ECS: it stays describable, is no longer listed).
    pub fn deregister(&mut self, reference: &str) -> Result<String, DefinitionError> {
        let (family, revision) = parse_reference(reference)?;
        let revision =
            revision.ok_or_else(|| DefinitionError::BadReference(reference.to_string()))?;
        let reg = self
            .families
            .get_mut(family)
            .and_then(|revs| revs.iter_mut().find(|r| r.revision == revision && r.active))
            .ok_or_else(|| DefinitionError::NotFound(reference.to_string()))?;
        reg.active = false;
        Ok(reg.reference())
    }
}

fn parse_reference(reference: &str) -> Result<(&str, Option<u32>), DefinitionError> {
    let bad = || DefinitionError::BadReference(reference.to_string());
    match reference.split_once(':') {
        None if !reference.is_empty() => Ok((reference, None)),
        Some((f, r)) if !f.is_empty() => Ok((f, Some(r.parse().map_err(|_| bad())?))),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(family: &str) -> spec::Validated {
        spec::parse(&format!(r#"{{"family":"{family}","containerDefinitions":[{{"name":"a","image":"i","memory":8}}]}}"#)).unwrap()
    }

    #[test]
    fn revisions_count_up_per_family() {
        let mut r = Registry::default();
        assert_eq!(r.register(def("web")).reference(), "web:1");
        assert_eq!(r.register(def("web")).reference(), "web:2");
        assert_eq!(r.register(def("db")).reference(), "db:1");
        assert_eq!(r.list(""), vec!["db:1", "web:1", "web:2"]);
        assert_eq!(r.get("web").unwrap().revision, 2);
    }

    #[test]
    fn deregistered_revision_is_unlisted_but_describable() {
        let mut r = Registry::default();
        r.register(def("web"));
        r.register(def("web"));
        assert_eq!(r.deregister("web:2").unwrap(), "web:2");
        assert_eq!(r.list("web"), vec!["web:1"]);
        assert_eq!(r.get("web").unwrap().revision, 1);
        assert!(!r.get("web:2").unwrap().active);
        assert!(matches!(
            r.deregister("web:2"),
            Err(DefinitionError::NotFound(_))
        ));
        assert!(matches!(
            r.deregister("web"),
            Err(DefinitionError::BadReference(_))
        ));
    }
}
