//! Who may change state: root and members of the `berth` group. The bus policy says the same;
//! this check holds when the daemon serves a bus without that policy (a private or session bus).

use zbus::message::Header;
use zbus::Connection;

use super::{BerthError, ADMIN_GROUP};

/// Pure rule over the caller's credentials.
pub fn may_change(uid: u32, groups: &[u32], admin_gid: Option<u32>) -> bool {
    uid == 0 || admin_gid.is_some_and(|g| groups.contains(&g))
}

/// What a caller who may not change state reads of a task definition in place of each
/// environment value and environment file: on real hosts they hold passwords and tokens.
pub const HIDDEN: &str = "(hidden: only root and the berth group read it)";

/// Hides the environment values and environment files of every container of a task
/// definition's JSON; returns how many were hidden. Names stay, so the shape can be read.
pub fn redact_definition(json: &mut serde_json::Value) -> usize {
    let mut n = 0;
    let Some(containers) = json
        .get_mut("containerDefinitions")
        .and_then(|c| c.as_array_mut())
    else {
        return 0;
    };
    for c in containers {
        for key in ["environment", "environmentFiles"] {
            let Some(list) = c.get_mut(key).and_then(|l| l.as_array_mut()) else {
                continue;
            };
            for entry in list {
                if let Some(v) = entry.get_mut("value") {
                    *v = HIDDEN.into();
                    n += 1;
                }
            }
        }
    }
    n
}

/// Whether the caller may change state (root or the `berth` group), from the bus's account
/// of its credentials.
pub async fn may_caller_change(conn: &Connection, hdr: &Header<'_>) -> bool {
    require_admin(conn, hdr).await.is_ok()
}

/// Asks the bus for the caller's credentials and applies [`may_change`]; returns the caller's
/// uid (the group's limits apply to callers other than root).
pub async fn require_admin(conn: &Connection, hdr: &Header<'_>) -> Result<u32, BerthError> {
    let sender = hdr
        .sender()
        .ok_or_else(|| BerthError::AccessDenied("the call has no sender".into()))?;
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let creds = dbus
        .get_connection_credentials(sender.clone().into())
        .await
        .map_err(|e| {
            BerthError::AccessDenied(format!("cannot read the caller's credentials: {e}"))
        })?;
    let uid = creds.unix_user_id().ok_or_else(|| {
        BerthError::AccessDenied("the bus did not report the caller's user".into())
    })?;
    let groups = creds.unix_group_ids().cloned().unwrap_or_default();
    let admin_gid = nix::unistd::Group::from_name(ADMIN_GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw());
    if may_change(uid, &groups, admin_gid) {
        Ok(uid)
    } else {
        Err(BerthError::AccessDenied(format!(
            "uid {uid} may not change berth's state: only root and members of the \"{ADMIN_GROUP}\" group may"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_group_members_may_change() {
        assert!(may_change(0, &[], None));
        assert!(may_change(1000, &[100, 990], Some(990)));
        assert!(!may_change(1000, &[100], Some(990)));
        assert!(!may_change(1000, &[100], None));
    }

    #[test]
    fn environment_values_and_files_are_hidden_names_kept() {
        let mut d = serde_json::json!({"family": "f", "containerDefinitions": [
            {"name": "a", "environment": [{"name": "DB_PASSWORD", "value": "hunter2"}],
             "environmentFiles": [{"type": "s3", "value": "/etc/app/secrets.env"}]},
            {"name": "b"}]});
        assert_eq!(redact_definition(&mut d), 2);
        let text = d.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("secrets.env"),
            "{text}"
        );
        assert!(text.contains("DB_PASSWORD"), "{text}");
    }
}
