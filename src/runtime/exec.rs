//! Runs a command inside a running container, as `runc exec` would: libcontainer's tenant
//! builder joins the container's namespaces and cgroup with its capabilities, as the given
//! user in the given directory, its output discarded. The health checks of a container task's
//! shim and of a microVM's agent run this way; the caller reaps the child.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;

/// Who runs the command, and where.
pub struct ExecAs<'a> {
    pub uid: u32,
    pub gid: u32,
    pub cwd: &'a str,
}

pub fn spawn(
    runtime_root: &Path,
    container_id: &str,
    argv: &[String],
    who: &ExecAs,
) -> Result<Pid, String> {
    let null = || File::options().read(true).write(true).open("/dev/null");
    let (i, o, e) = match (null(), null(), null()) {
        (Ok(i), Ok(o), Ok(e)) => (i, o, e),
        _ => return Err("cannot open /dev/null".into()),
    };
    ContainerBuilder::new(container_id.to_string(), SyscallType::default())
        .with_root_path(runtime_root)
        .map_err(|e| e.to_string())?
        .with_stdin(OwnedFd::from(i))
        .with_stdout(OwnedFd::from(o))
        .with_stderr(OwnedFd::from(e))
        .as_tenant()
        .with_container_args(argv.to_vec())
        .with_cwd(Some(who.cwd))
        .with_user(Some(who.uid))
        .with_group(Some(who.gid))
        .with_detach(true)
        .build()
        .map_err(|e| format!("could not run the check: {e}"))
}
