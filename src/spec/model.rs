//! Typed task definitions: what validation produces and the rest of berth consumes. Only the
//! fields berth acts on are typed; the registered JSON is kept whole beside them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Bridge,
    Awsvpc,
    Host,
    None,
}

impl NetworkMode {
    pub fn parse(s: &str) -> Option<NetworkMode> {
        Some(match s {
            "bridge" => NetworkMode::Bridge,
            "awsvpc" => NetworkMode::Awsvpc,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            _ => return None,
        })
    }
}

/// `pidMode` / `ipcMode`: share the host's namespace or one per task (absent: per container).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedNamespace {
    Host,
    Task,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    /// Absent or 0: a dynamic host port.
    pub host_port: Option<u16>,
    pub protocol: Protocol,
}

impl PortMapping {
    /// The host port this mapping binds, when known before the task starts.
    pub fn static_host_port(&self, mode: NetworkMode) -> Option<u16> {
        match mode {
            NetworkMode::Host => Some(self.host_port.unwrap_or(self.container_port)),
            NetworkMode::None => None,
            NetworkMode::Bridge | NetworkMode::Awsvpc => self.host_port,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    pub name: String,
    pub image: String,
    /// CPU units, a relative share (`cpu.weight`).
    pub cpu: u64,
    /// Hard limit in MiB (`memory.max`).
    pub memory: Option<u64>,
    /// Soft limit in MiB (`memory.low`).
    pub memory_reservation: Option<u64>,
    pub essential: bool,
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    pub working_directory: Option<String>,
    pub user: Option<String>,
    pub port_mappings: Vec<PortMapping>,
    /// Seconds between SIGTERM and SIGKILL.
    pub stop_timeout: Option<u64>,
    /// `links` as (container, alias): /etc/hosts entries in bridge mode.
    pub links: Vec<(String, String)>,
    pub hostname: Option<String>,
    pub dns_servers: Vec<String>,
    pub dns_search_domains: Vec<String>,
    /// `extraHosts` as (hostname, address).
    pub extra_hosts: Vec<(String, String)>,
    pub sandbox: super::sandbox::Sandbox,
    pub docker_labels: Vec<(String, String)>,
    pub mount_points: Vec<super::volumes::MountPoint>,
    pub volumes_from: Vec<super::volumes::VolumeFrom>,
    /// `environmentFiles[].value`: host paths of `VAR=VALUE` files, read at launch.
    pub environment_files: Vec<String>,
    pub depends_on: Vec<super::order::Dependency>,
    /// Seconds to wait for `depends_on` before the task fails.
    pub start_timeout: Option<u64>,
    pub health_check: Option<super::order::HealthCheck>,
    /// `secrets`: variables from the secret store (files beneath `secrets_dir` on one host).
    pub secrets: Vec<super::secrets::Secret>,
    /// `repositoryCredentials.credentialsParameter`: the registry login of a private image.
    pub repository_credentials: Option<String>,
}

impl ContainerDefinition {
    /// MiB this container takes from the books when the task gives no memory of its own.
    pub fn reservation_mib(&self) -> u64 {
        self.memory_reservation.or(self.memory).unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    pub family: String,
    /// Task-level CPU units (`cpu.max` ceiling).
    pub cpu: Option<u64>,
    /// Task-level MiB (`memory.max`).
    pub memory: Option<u64>,
    pub network_mode: NetworkMode,
    pub pid_mode: Option<SharedNamespace>,
    pub ipc_mode: Option<SharedNamespace>,
    pub volumes: Vec<super::volumes::Volume>,
    pub containers: Vec<ContainerDefinition>,
    /// `requiresCompatibilities` is `["FARGATE"]`: the daemon's `fargate_isolation` applies.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fargate_only: bool,
}

impl TaskDefinition {
    /// The reservation the task takes from capacity (DESIGN.md, "Resource semantics").
    pub fn reserved_memory_mib(&self) -> u64 {
        self.memory
            .unwrap_or_else(|| self.containers.iter().map(|c| c.reservation_mib()).sum())
    }

    pub fn reserved_cpu_units(&self) -> u64 {
        self.cpu
            .unwrap_or_else(|| self.containers.iter().map(|c| c.cpu).sum())
    }

    /// Host ports the task binds that are known before it starts: in `host` mode every
    /// mapping's port (its hostPort is its containerPort), elsewhere the static hostPorts.
    pub fn static_host_ports(&self) -> Vec<(Protocol, u16)> {
        let mut v: Vec<(Protocol, u16)> = self
            .containers
            .iter()
            .flat_map(|c| &c.port_mappings)
            .filter_map(|m| {
                m.static_host_port(self.network_mode)
                    .map(|h| (m.protocol, h))
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
