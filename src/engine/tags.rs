//! Tags on berth's objects: checked here by ECS's rules, kept in the store beside the object,
//! forgotten with it.

use super::{Engine, State};
use crate::store::{StoreError, Tag, Tagged};

/// ECS's limit of user tags on one resource.
pub const MAX_TAGS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum TagError {
    #[error("{0}")]
    Invalid(String),
    #[error("the resource {0} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `tags` may be put on a resource that has `existing`: ECS's lengths and characters,
/// its reserved `aws:` prefix, and at most [`MAX_TAGS`] once merged.
pub fn check(tags: &[Tag], existing: &[Tag]) -> Result<(), TagError> {
    let allowed = |c: char| c.is_alphanumeric() || " +-=._:/@".contains(c);
    for (i, t) in tags.iter().enumerate() {
        let at = format!("tags[{i}]");
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(TagError::Invalid(format!(
                "{at}.key must be 1-128 characters"
            )));
        }
        if t.value.chars().count() > 256 {
            return Err(TagError::Invalid(format!(
                "{at}.value must be at most 256 characters"
            )));
        }
        if let Some(c) = t.key.chars().chain(t.value.chars()).find(|c| !allowed(*c)) {
            return Err(TagError::Invalid(format!(
                "{at} has {c:?}: tags may hold letters, digits, spaces and + - = . _ : / @"
            )));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(TagError::Invalid(format!(
                "{at}.key: the aws: prefix is reserved"
            )));
        }
    }
    let mut keys: Vec<&str> = existing
        .iter()
        .chain(tags)
        .map(|t| t.key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.len() > MAX_TAGS {
        return Err(TagError::Invalid(format!(
            "a resource may have at most {MAX_TAGS} tags"
        )));
    }
    Ok(())
}

/// What `on` names as the store keys it (a definition by its canonical `family:revision`,
/// so `web:03` and `web:3` share their tags), once it is known to exist.
fn canonical(s: &State, on: &Tagged) -> Result<Tagged, TagError> {
    let (found, name) = match on {
        Tagged::Cluster | Tagged::Instance => return Ok(on.clone()),
        Tagged::Definition(r) => match s.definitions.get(r) {
            Ok(d) => return Ok(Tagged::Definition(d.reference())),
            Err(_) => (false, format!("task definition {r}")),
        },
        Tagged::Task(id) => (s.tasks.contains_key(id), format!("task {id}")),
        Tagged::Service(n) => (
            s.services.get(n).is_some_and(|s| !s.deleting),
            format!("service {n}"),
        ),
    };
    if found {
        Ok(on.clone())
    } else {
        Err(TagError::NotFound(name))
    }
}

// Each call holds the engine's lock from the existence check to the write, so a tag cannot
// land on an object removed in between.
impl Engine {
    pub fn tags(&self, on: &Tagged) -> Result<Vec<Tag>, TagError> {
        let state = self.lock();
        let on = canonical(&state, on)?;
        Ok(state.store.tags(&on)?)
    }

    pub fn tag(&self, on: &Tagged, tags: &[Tag]) -> Result<(), TagError> {
        let state = self.lock();
        let on = canonical(&state, on)?;
        check(tags, &state.store.tags(&on)?)?;
        Ok(state.store.put_tags(&on, tags)?)
    }

    pub fn untag(&self, on: &Tagged, keys: &[String]) -> Result<(), TagError> {
        if let Some(k) = keys
            .iter()
            .find(|k| k.to_ascii_lowercase().starts_with("aws:"))
        {
            return Err(TagError::Invalid(format!(
                "{k}: the aws: prefix is reserved"
            )));
        }
        let state = self.lock();
        let on = canonical(&state, on)?;
        Ok(state.store.remove_tags(&on, keys)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn tags_are_checked_by_ecs_rules_naming_the_tag() {
        assert!(check(&[tag("team", "web-1 a/b@c")], &[]).is_ok());
        let refused = |t: Tag| check(&[tag("ok", ""), t], &[]).unwrap_err().to_string();
        assert_eq!(
            refused(tag("", "x")),
            "tags[1].key must be 1-128 characters"
        );
        assert!(refused(tag(&"k".repeat(129), "x")).contains("tags[1].key"));
        assert!(refused(tag("k", &"v".repeat(257))).contains("tags[1].value"));
        assert!(refused(tag("k", "a;b")).contains("';'"));
        assert!(refused(tag("AWS:owner", "x")).contains("reserved"));
        let fifty: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(
            check(&[tag("k0", "new")], &fifty).is_ok(),
            "replacing a key adds none"
        );
        assert!(check(&[tag("k50", "v")], &fifty)
            .unwrap_err()
            .to_string()
            .contains("at most 50"));
    }

    #[test]
    fn tags_go_on_what_exists_and_come_back_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let e = super::super::test_engine(dir.path());
        let on = Tagged::Cluster;
        e.tag(&on, &[tag("b", "2"), tag("a", "1")]).unwrap();
        e.untag(&on, &["b".into()]).unwrap();
        assert_eq!(e.tags(&on).unwrap(), vec![tag("a", "1")]);
        let missing = e
            .tag(&Tagged::Task("nosuch".into()), &[tag("a", "1")])
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "the resource task nosuch does not exist"
        );
        assert!(e.tags(&Tagged::Service("nosuch".into())).is_err());
        let def =
            r#"{"family":"web","containerDefinitions":[{"name":"a","image":"b","memory":32}]}"#;
        e.register_definition(def).unwrap();
        // Another spelling of a revision tags the same definition.
        e.tag(&Tagged::Definition("web:01".into()), &[tag("k", "v")])
            .unwrap();
        assert_eq!(
            e.tags(&Tagged::Definition("web:1".into())).unwrap(),
            vec![tag("k", "v")]
        );
    }
}
