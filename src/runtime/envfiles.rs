//! `environmentFiles`: host files of `VAR=VALUE` lines, read when the task starts and put
//! under the definition's own `environment` (which wins, as on ECS); a later file wins over
//! an earlier one, as Docker's `--env-file` does.

use super::LaunchError;
use crate::spec::ContainerDefinition;

/// Larger files are refused: an environment file is a few lines.
const MAX_BYTES: u64 = 1 << 20;

/// Lines of one file: `#` comments and blank lines skipped, no quoting (ECS and Docker take
/// the value as it stands); a line without `=` is an error naming its number. Never its text:
/// the reason becomes the task's, which every local user may read, and the file may be one
/// of secrets (or not an environment file at all, such as `/etc/shadow`).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => out.push((k.trim().to_string(), v.to_string())),
            _ => {
                return Err(format!(
                    "line {} is not VAR=VALUE (its text is not shown: it may be a secret)",
                    n + 1
                ))
            }
        }
    }
    Ok(out)
}

/// The container with its files' variables under its own `environment`.
pub fn merge(c: &ContainerDefinition) -> Result<ContainerDefinition, LaunchError> {
    let mut out = c.clone();
    if c.environment_files.is_empty() {
        return Ok(out);
    }
    let mut env = Vec::new();
    for (i, path) in c.environment_files.iter().enumerate() {
        let refused = |why: String| LaunchError::Host {
            container: c.name.clone(),
            what: format!("environmentFiles[{i}] {path}: {why}"),
        };
        let text = read(path).map_err(refused)?;
        env.extend(parse(&text).map_err(refused)?);
    }
    env.extend(c.environment.iter().cloned());
    out.environment = env;
    Ok(out)
}

/// A regular file's text, at most [`MAX_BYTES`]. What the path names is looked at through an
/// `O_PATH` descriptor before anything opens it for reading: opening a FIFO would stall the
/// launch, and opening some devices acts (a watchdog arms, a tape rewinds).
fn read(path: &str) -> Result<String, String> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = handle.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    // The same file, not whatever the path names by now.
    let f = std::fs::File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
        .map_err(|e| e.to_string())?;
    if meta.len() > MAX_BYTES {
        return Err(format!("is over {MAX_BYTES} bytes"));
    }
    let mut bytes = Vec::new();
    f.take(MAX_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blanks_are_skipped_and_values_kept_as_they_stand() {
        let v = parse("# settings\n\nA=1\nB = two words \nC=x=y\nD=\n").unwrap();
        assert_eq!(
            v,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), " two words ".to_string()),
                ("C".to_string(), "x=y".to_string()),
                ("D".to_string(), String::new()),
            ]
        );
        let e = parse("A=1\nroot:$y$j9T$secret-hash:19000:0:99999:7:::").unwrap_err();
        assert!(e.starts_with("line 2 is not VAR=VALUE"), "{e}");
        assert!(!e.contains("secret-hash") && !e.contains("root"), "{e}");
    }

    #[test]
    fn the_definitions_environment_wins_over_the_files_and_a_missing_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("app.env");
        std::fs::write(&f, "A=file\nB=file\n").unwrap();
        let mut c = crate::spec::parse(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":32,
            "environment":[{"name":"B","value":"definition"}]}]}"#,
        )
        .unwrap()
        .definition
        .containers
        .remove(0);
        c.environment_files = vec![f.display().to_string()];
        let merged = merge(&c).unwrap();
        assert_eq!(
            merged.environment,
            [
                ("A".to_string(), "file".to_string()),
                ("B".to_string(), "file".to_string()),
                ("B".to_string(), "definition".to_string()),
            ]
        );
        c.environment_files = vec!["/dev/null".into()];
        let e = merge(&c).unwrap_err().to_string();
        assert!(e.contains("/dev/null: is not a regular file"), "{e}");
        c.environment_files = vec!["/nonexistent/x.env".into()];
        let e = merge(&c).unwrap_err().to_string();
        assert!(
            e.contains("container a: environmentFiles[0] /nonexistent/x.env: No such file"),
            "{e}"
        );
    }
}
