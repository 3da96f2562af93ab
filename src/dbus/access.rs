//! Who may change state: root and members of the `berth` group. The bus policy says the same;
//! this check holds when the daemon serves a bus without that policy (a private or session bus).

use zbus::message::Header;
use zbus::Connection;

use super::{BerthError, ADMIN_GROUP};

/// Pure rule over the caller's credentials.
pub fn may_change(uid: u32, groups: &[u32], admin_gid: Option<u32>) -> bool {
    uid == 0 || admin_gid.is_some_and(|g| groups.contains(&g))
}

/// Asks the bus for the caller's credentials and applies [`may_change`].
pub async fn require_admin(conn: &Connection, hdr: &Header<'_>) -> Result<(), BerthError> {
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
        Ok(())
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
}
