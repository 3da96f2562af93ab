//! Image names as users write them in task definitions: `busybox`, `busybox:1.36`,
//! `docker.io/library/busybox:latest` and `public.ecr.aws/docker/library/busybox` all name
//! images; berth keys its store by one normal form so that each of them finds the import.

/// The normal form: no `docker.io/` or `library/` prefix, a tag (default `latest`), digests
/// (`@sha256:...`) kept as written.
pub fn normalize(name: &str) -> String {
    let name = name.trim();
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    let name = name.strip_prefix("index.docker.io/").unwrap_or(name);
    let name = name.strip_prefix("library/").unwrap_or(name);
    if name.contains('@') {
        return name.to_string();
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Whether `name` is acceptable as an image name given by a user (`--name`).
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !name.starts_with(['/', ':', '.', '-'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms_meet() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("docker.io/library/busybox"), "busybox:latest");
        assert_eq!(normalize("library/busybox:1.36"), "busybox:1.36");
        assert_eq!(
            normalize("registry:5000/team/app"),
            "registry:5000/team/app:latest"
        );
        assert_eq!(normalize("app@sha256:abcd"), "app@sha256:abcd");
    }

    #[test]
    fn names_with_spaces_or_leading_slash_are_refused() {
        assert!(is_valid("busybox:latest"));
        assert!(!is_valid("bad name"));
        assert!(!is_valid("/etc/passwd"));
        assert!(!is_valid(""));
    }
}
