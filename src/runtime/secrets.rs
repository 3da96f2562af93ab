//! `secrets`: each variable's value read at launch from its file beneath `secrets_dir`
//! (`spec::secrets::secret_file` names it), and put in the container's environment, where it
//! replaces a variable of the same name.
//!
//! The directory must be root's alone (mode 0700 or tighter): a file another user could plant
//! would become a task's secret, and one they could read would be no secret. Files are opened beneath it without following links,
//! and no error shows a file's content.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::LaunchError;
use crate::spec::ContainerDefinition;

/// A secret is a password or a key, not a file of data.
const MAX_BYTES: u64 = 64 * 1024;

/// The container with its secrets in its environment; unchanged without secrets.
pub fn merge(
    c: &ContainerDefinition,
    dir: Option<&Path>,
) -> Result<ContainerDefinition, LaunchError> {
    let mut out = c.clone();
    if c.secrets.is_empty() {
        return Ok(out);
    }
    let refused = |what: String| LaunchError::Host {
        container: c.name.clone(),
        what,
    };
    // The engine refuses such a task before it launches; kept as the last word.
    if dir.is_none() {
        return Err(refused("secrets: no secrets_dir is configured".into()));
    }
    for (i, s) in c.secrets.iter().enumerate() {
        let value = read_value(dir, &s.value_from)
            .map_err(|why| refused(format!("secrets[{i}] ({}): {why}", s.name)))?;
        out.environment.retain(|(k, _)| k != &s.name);
        out.environment.push((s.name.clone(), value));
    }
    Ok(out)
}

/// The value of the secret `value_from` (an SSM parameter or Secrets Manager ARN or name)
/// from its file beneath `dir`; the error names the file, never its content.
pub fn read_value(dir: Option<&Path>, value_from: &str) -> Result<String, String> {
    let dir = dir.ok_or("no secrets_dir is configured in berthd.toml")?;
    let root = open_dir(dir).map_err(|why| format!("secrets_dir {}: {why}", dir.display()))?;
    let rel = crate::spec::secrets::secret_file(value_from)?;
    let bytes = crate::beneath::read_bounded(root.as_fd(), &rel, MAX_BYTES)
        .map_err(|e| format!("{} beneath {}: {e}", rel.display(), dir.display()))?;
    let mut value =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", rel.display()))?;
    // `echo secret > file` leaves one newline that is not part of the secret.
    if value.ends_with('\n') {
        value.pop();
    }
    Ok(value)
}

/// The secrets directory, opened after checking it is root's alone: a file another user
/// could plant or read there is no secret. (Beneath it, nothing is reachable but by root.)
fn open_dir(dir: &Path) -> Result<std::os::fd::OwnedFd, String> {
    let root = crate::beneath::open_root(dir).map_err(|e| e.to_string())?;
    let meta = std::fs::File::from(root.try_clone().map_err(|e| e.to_string())?)
        .metadata()
        .map_err(|e| e.to_string())?;
    if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "must be root's alone (it is uid {}, mode {:o}); chown root and chmod 700 it",
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(secrets: &str) -> ContainerDefinition {
        let text = format!(
            r#"{{"family":"f","containerDefinitions":[{{"name":"app","image":"busybox","memory":64,"environment":[{{"name":"DB","value":"plain"}},{{"name":"KEEP","value":"1"}}],"secrets":[{secrets}]}}]}}"#
        );
        crate::spec::parse(&text)
            .unwrap_or_else(|e| panic!("{e}"))
            .definition
            .containers
            .remove(0)
    }

    fn secrets_dir() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::create_dir_all(d.path().join("prod")).expect("mkdir");
        std::fs::write(d.path().join("prod/db"), "s3cret\n").expect("write");
        d
    }

    #[test]
    fn a_secret_replaces_the_variable_of_its_name() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: the secrets directory must be root's, and this test is not root");
            return;
        }
        let d = secrets_dir();
        let c = container(r#"{"name":"DB","valueFrom":"arn:aws:ssm:r:1:parameter/prod/db"}"#);
        let merged = merge(&c, Some(d.path())).expect("merged");
        assert_eq!(
            merged.environment,
            vec![
                ("KEEP".to_string(), "1".to_string()),
                ("DB".to_string(), "s3cret".to_string())
            ]
        );
    }

    #[test]
    fn a_link_out_of_the_directory_is_not_followed_and_its_content_not_shown() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: the secrets directory must be root's, and this test is not root");
            return;
        }
        let d = secrets_dir();
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("victim"), "host-only\n").expect("write");
        std::os::unix::fs::symlink(outside.path().join("victim"), d.path().join("link"))
            .expect("symlink");
        let c = container(r#"{"name":"DB","valueFrom":"link"}"#);
        let err = merge(&c, Some(d.path()))
            .expect_err("followed a link")
            .to_string();
        assert!(err.contains("secrets[0] (DB)"), "{err}");
        assert!(!err.contains("host-only"), "{err}");
    }

    #[test]
    fn a_directory_others_may_reach_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = secrets_dir();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let c = container(r#"{"name":"DB","valueFrom":"prod/db"}"#);
        let err = merge(&c, Some(d.path())).expect_err("accepted").to_string();
        assert!(err.contains("must be root's alone"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn without_secrets_nothing_is_read() {
        let c = container("");
        assert_eq!(merge(&c, None).expect("merged").environment, c.environment);
    }
}
