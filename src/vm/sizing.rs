//! Which isolation a task gets, and how big its microVM is: plain decisions over the task
//! definition and the daemon's settings.

use serde::{Deserialize, Serialize};

use crate::spec::TaskDefinition;

/// The smallest guest berth boots: the kernel, the agent and the unpacked initramfs need it.
pub const MIN_VM_MEMORY_MIB: u64 = 128;
/// QEMU hands memory out in MiB; berth rounds a size up to this many.
const VM_MEMORY_STEP_MIB: u64 = 2;
/// The most vCPUs a microvm gets (QEMU's microvm machine and a sane guest).
pub const MAX_VCPUS: u64 = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces and cgroups on the host's kernel.
    #[default]
    Container,
    /// A VM of its own, Fargate-style.
    Microvm,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Container => "container",
            Isolation::Microvm => "microvm",
        }
    }

    pub fn parse(s: &str) -> Result<Isolation, String> {
        match s {
            "container" => Ok(Isolation::Container),
            "microvm" => Ok(Isolation::Microvm),
            other => Err(format!(
                "isolation: {other:?} is not one of container, microvm"
            )),
        }
    }

    /// What a task gets: what the caller asked for, else the daemon's default for a definition
    /// that runs only on Fargate, else the daemon's default.
    pub fn choose(
        asked: Option<Isolation>,
        def: &TaskDefinition,
        default: Isolation,
        fargate: Isolation,
    ) -> Isolation {
        asked.unwrap_or(if def.fargate_only { fargate } else { default })
    }
}

/// A microVM's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSize {
    pub vcpus: u32,
    pub memory_mib: u64,
}

/// The task's microVM: task-level `cpu`/`memory`, else the sums of its containers', rounded up
/// to what the VMM gives (whole vCPUs; memory in steps, at least [`MIN_VM_MEMORY_MIB`]).
pub fn vm_size(def: &TaskDefinition) -> Result<VmSize, String> {
    let memory = def.memory.unwrap_or_else(|| {
        def.containers
            .iter()
            .map(|c| c.memory.or(c.memory_reservation).unwrap_or(0))
            .sum()
    });
    if memory == 0 {
        return Err(
            "memory: a microVM task needs a size: set the task's memory, or each container's \
             memory or memoryReservation"
                .into(),
        );
    }
    let cpu = def.reserved_cpu_units();
    let vcpus = cpu.div_ceil(1024).max(1);
    if vcpus > MAX_VCPUS {
        return Err(format!(
            "cpu: {cpu} units is {vcpus} vCPUs; a microVM takes at most {MAX_VCPUS}"
        ));
    }
    let memory_mib =
        memory.max(MIN_VM_MEMORY_MIB).div_ceil(VM_MEMORY_STEP_MIB) * VM_MEMORY_STEP_MIB;
    Ok(VmSize {
        vcpus: vcpus as u32,
        memory_mib,
    })
}

/// What a microVM task cannot have, named by field: volumes on the host's files (a VM does not
/// see them, as on Fargate), shared volumes that outlive the task (the VM's do not), and port
/// mappings (a microVM has only loopback in this berth: a binding it shows would be a lie).
pub fn check_fit(def: &TaskDefinition) -> Result<(), String> {
    use crate::spec::volumes::VolumeSource;
    let ports = def
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.port_mappings.is_empty())
        .map(|(i, c)| {
            format!(
                "containerDefinitions[{i}].portMappings ({}): a microVM task has only loopback \
                 networking in this berth; run it as a container (--isolation container)",
                c.name
            )
        });
    let refusals: Vec<String> = ports
        .chain(
            def.volumes
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match &v.source {
                    VolumeSource::HostPath(p) => Some(format!(
                "volumes[{i}] ({}): host.sourcePath {p}: a microVM task cannot see the host's \
                 files; leave host empty for a task-scoped volume, or run it as a container",
                v.name
            )),
                    VolumeSource::Shared => Some(format!(
                "volumes[{i}] ({}): dockerVolumeConfiguration scope shared outlives the task, \
                 which a microVM's volumes do not; use scope task, or run it as a container",
                v.name
            )),
                    VolumeSource::Task | VolumeSource::TaskTmpfs => None,
                }),
        )
        .collect();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_shared_volumes_are_refused_by_path_and_task_volumes_fit() {
        let d = def(
            r#"{"family":"f","memory":"512","containerDefinitions":[{"name":"a","image":"busybox"}],
                "volumes":[{"name":"scratch","host":{}},{"name":"logs","host":{"sourcePath":"/var/log"}},
                  {"name":"cache","dockerVolumeConfiguration":{"scope":"shared","autoprovision":true}}]}"#,
        );
        let e = check_fit(&d).unwrap_err();
        assert!(
            e.starts_with("volumes[1] (logs): host.sourcePath /var/log"),
            "{e}"
        );
        assert!(
            e.contains("; volumes[2] (cache): dockerVolumeConfiguration scope shared"),
            "{e}"
        );
        let fits = def(
            r#"{"family":"f","memory":"512","containerDefinitions":[{"name":"a","image":"busybox"}],
                "volumes":[{"name":"scratch"}]}"#,
        );
        assert_eq!(check_fit(&fits), Ok(()));
        let web = def(
            r#"{"family":"f","networkMode":"awsvpc","memory":"512","containerDefinitions":[
                {"name":"side","image":"busybox"},
                {"name":"web","image":"busybox","portMappings":[{"containerPort":80}]}]}"#,
        );
        let e = check_fit(&web).unwrap_err();
        assert!(
            e.starts_with(
                "containerDefinitions[1].portMappings (web): a microVM task has only loopback"
            ),
            "{e}"
        );
    }

    fn def(json: &str) -> TaskDefinition {
        crate::spec::parse(json).expect("valid").definition
    }

    #[test]
    fn task_level_size_wins_and_rounds_up() {
        let d = def(
            r#"{"family":"f","cpu":"1536","memory":"513","containerDefinitions":[{"name":"a","image":"busybox","memory":64}]}"#,
        );
        assert_eq!(
            vm_size(&d),
            Ok(VmSize {
                vcpus: 2,
                memory_mib: 514
            })
        );
    }

    #[test]
    fn container_sums_size_a_vm_with_at_least_the_minimum() {
        let d = def(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"busybox","memory":32,"cpu":100},{"name":"b","image":"busybox","memoryReservation":16}]}"#,
        );
        assert_eq!(
            vm_size(&d),
            Ok(VmSize {
                vcpus: 1,
                memory_mib: MIN_VM_MEMORY_MIB
            })
        );
    }

    #[test]
    fn a_task_without_any_memory_is_refused_naming_the_field() {
        // Registration asks for memory already; a definition built otherwise is still refused.
        let mut d = def(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"busybox","memory":64}]}"#,
        );
        d.containers[0].memory = None;
        d.containers[0].memory_reservation = None;
        let e = vm_size(&d).unwrap_err();
        assert!(e.starts_with("memory:"), "{e}");
    }

    #[test]
    fn too_many_vcpus_are_refused_naming_cpu() {
        let d = def(
            r#"{"family":"f","cpu":"99999","memory":"512","containerDefinitions":[{"name":"a","image":"busybox"}]}"#,
        );
        assert!(vm_size(&d).unwrap_err().starts_with("cpu:"));
    }

    #[test]
    fn fargate_only_definitions_get_the_fargate_default() {
        let fargate = def(
            r#"{"family":"f","requiresCompatibilities":["FARGATE"],"memory":"512","containerDefinitions":[{"name":"a","image":"busybox"}]}"#,
        );
        let both = def(
            r#"{"family":"f","requiresCompatibilities":["EC2","FARGATE"],"memory":"512","containerDefinitions":[{"name":"a","image":"busybox"}]}"#,
        );
        let (c, m) = (Isolation::Container, Isolation::Microvm);
        assert_eq!(Isolation::choose(None, &fargate, c, m), m);
        assert_eq!(Isolation::choose(None, &both, c, m), c);
        assert_eq!(Isolation::choose(Some(c), &fargate, c, m), c);
        assert_eq!(Isolation::parse("microvm"), Ok(m));
        assert!(Isolation::parse("vm")
            .unwrap_err()
            .contains("container, microvm"));
    }
}
