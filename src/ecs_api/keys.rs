//! The ECS API's access keys: a root-only JSON file mapping each access key id to its secret
//! and what it may do, read-only (describe and list) or read-write (as the D-Bus split between
//! anyone and root or the `berth` group).
//!
//! ```json
//! {"keys": [{"accessKeyId": "BERTHADMIN", "secretAccessKey": "…", "access": "read-write"}]}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One key. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub secret: String,
    pub access: Access,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(<hidden>, {:?})", self.access)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    access_key_id: String,
    secret_access_key: String,
    access: Access,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    keys: Vec<Entry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ECS API keys file {path}: {why}")]
pub struct KeysError {
    pub path: String,
    pub why: String,
}

/// Reads the keys; an absent file is no key at all (every request refused).
pub fn load(path: &Path) -> Result<BTreeMap<String, Key>, KeysError> {
    let err = |why: String| KeysError {
        path: path.display().to_string(),
        why,
    };
    let Some(bytes) = crate::fsutil::read_root_only(path, 1 << 20).map_err(err)? else {
        return Ok(BTreeMap::new());
    };
    parse(&bytes).map_err(err)
}

pub fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Key>, String> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| {
        format!("{e} (the form: {{\"keys\": [{{\"accessKeyId\", \"secretAccessKey\", \"access\": \"read-only\" or \"read-write\"}}]}})")
    })?;
    let mut keys = BTreeMap::new();
    for (i, e) in file.keys.into_iter().enumerate() {
        if e.access_key_id.is_empty() || !e.access_key_id.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(format!("keys[{i}].accessKeyId: letters and digits only"));
        }
        if e.secret_access_key.len() < 16 {
            return Err(format!(
                "keys[{i}].secretAccessKey: at least 16 characters (AWS's are 40)"
            ));
        }
        let key = Key {
            secret: e.secret_access_key,
            access: e.access,
        };
        if keys.insert(e.access_key_id.clone(), key).is_some() {
            return Err(format!("keys[{i}].accessKeyId: {} twice", e.access_key_id));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_with_their_access_and_bad_entries_name_the_field() {
        let k = parse(br#"{"keys":[{"accessKeyId":"RW1","secretAccessKey":"0123456789abcdef0","access":"read-write"},
            {"accessKeyId":"RO1","secretAccessKey":"0123456789abcdef1","access":"read-only"}]}"#)
        .unwrap();
        assert_eq!(k["RW1"].access, Access::ReadWrite);
        assert_eq!(k["RO1"].access, Access::ReadOnly);
        assert!(!format!("{:?}", k["RW1"]).contains("0123"));
        for (bad, field) in [
            (
                r#"{"keys":[{"accessKeyId":"a/b","secretAccessKey":"0123456789abcdef","access":"read-only"}]}"#,
                "keys[0].accessKeyId",
            ),
            (
                r#"{"keys":[{"accessKeyId":"A","secretAccessKey":"short","access":"read-only"}]}"#,
                "keys[0].secretAccessKey",
            ),
            (
                r#"{"keys":[{"accessKeyId":"A","secretAccessKey":"0123456789abcdef","access":"admin"}]}"#,
                "unknown variant",
            ),
        ] {
            let e = parse(bad.as_bytes()).unwrap_err();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }
}
