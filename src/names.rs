//! The shapes of the names berth turns into paths, cgroups and units: task ids it made itself
//! and the names ECS lets a task definition give (families, containers, volumes). Anything
//! else is refused before it is joined to a directory, so a name can never climb out of one.

/// A task id as berth makes them: 32 lowercase hex digits. Anything else found in a directory,
/// a cgroup or a caller's argument is not a task of berth's.
pub fn is_task_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// ECS's rule for family, container and volume names: 1-255 letters, digits, hyphens and
/// underscores. None of them can be `.`, `..` or hold a `/`.
pub fn is_ecs_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `name` as one path component, when it has the shape of an ECS name or a task id.
pub fn segment<'a>(what: &str, name: &'a str) -> Result<&'a str, NameError> {
    if is_ecs_name(name) {
        Ok(name)
    } else {
        Err(NameError {
            what: what.to_string(),
            name: name.chars().take(80).collect(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {name:?} is not a name berth accepts (1-255 letters, digits, hyphens or underscores)"
)]
pub struct NameError {
    pub what: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_32_lowercase_hex_digits() {
        assert!(is_task_id("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "..",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef/123456789abcdef",
            "../../../../../../../../../../etc",
        ] {
            assert!(!is_task_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_that_could_leave_a_directory_are_refused() {
        for good in ["web", "my_app-2", "A", &"x".repeat(255)] {
            assert_eq!(segment("volume", good), Ok(good));
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a b",
            "é",
            "a\0b",
            &"x".repeat(256),
        ] {
            let e = segment("volume", bad).unwrap_err();
            assert_eq!(e.what, "volume");
            assert!(e.to_string().contains("letters, digits"), "{e}");
        }
    }
}
