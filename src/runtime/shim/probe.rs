//! Runs one health check inside a running container, as `runc exec` would: libcontainer's
//! tenant builder joins the container's namespaces and cgroup with its capabilities, as the
//! container's user in its working directory. The check is the shim's child; the shim reaps it.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;

use crate::runtime::plan::HealthPlan;

pub fn spawn(
    runtime_root: &Path,
    container_id: &str,
    h: &HealthPlan,
    cwd: &str,
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
        .with_container_args(h.check.command.clone())
        .with_cwd(Some(cwd))
        .with_user(Some(h.uid))
        .with_group(Some(h.gid))
        .with_detach(true)
        .build()
        .map_err(|e| format!("could not run the check: {e}"))
}
