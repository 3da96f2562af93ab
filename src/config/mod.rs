//! The daemon's configuration: `/etc/berth/berthd.toml`, every key optional.
//!
//! Parsing only; nothing here touches the host. A missing default file is not an error
//! (defaults apply); a file given with `--config` must exist.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::pull::{PullBehavior, PullConfig};
use crate::vm::sizing::Isolation;

use crate::network::Subnet;

mod check;
pub use check::{MIN_AGENT_TIMEOUT_SECS, MIN_RETENTION_SECS};

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/berth/berthd.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Which D-Bus bus the daemon serves on and the CLI talks to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum BusChoice {
    System,
    Session,
    Address(String),
}

impl From<String> for BusChoice {
    fn from(s: String) -> Self {
        match s.as_str() {
            "system" => BusChoice::System,
            "session" => BusChoice::Session,
            _ => BusChoice::Address(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct Config {
    /// Task state, images and the database live here.
    pub state_dir: PathBuf,
    /// MiB of host memory kept out of the books for the OS and berth itself (the ECS agent's
    /// `ECS_RESERVED_MEMORY`).
    pub memory_reserve_mib: u64,
    /// Address of the Prometheus `/metrics` endpoint.
    pub metrics_listen: SocketAddr,
    /// How often, while someone scrapes, the tasks' series are read and rendered off the
    /// request path (as cAdvisor's housekeeping); 0 reads them for each scrape.
    pub metrics_refresh_ms: u64,
    /// `"system"`, `"session"`, or a D-Bus address such as `unix:path=/run/x`.
    pub bus: BusChoice,
    /// Where cgroup v2 is mounted; only tests point it elsewhere.
    pub cgroup_mount: PathBuf,
    /// The systemd slice every task's scope (`berth-<task-id>.scope`) is placed in.
    pub slice: String,
    /// libcontainer's state (sockets, container state) on tmpfs; kept short, socket paths
    /// under it must fit in 108 bytes.
    pub runtime_dir: PathBuf,
    /// `pids.max` of every task and container.
    pub pids_max: u64,
    /// Host ports (TCP and UDP) no task may take; berthd's metrics port is added to them.
    pub reserved_ports: Vec<u16>,
    /// berth's Linux bridge for bridge and awsvpc tasks.
    pub bridge_name: String,
    /// The bridge's IPv4 subnet: the gateway is its first address, tasks get the rest.
    pub bridge_subnet: Subnet,
    /// Where dynamic host ports come from (ECS's default range).
    pub ephemeral_ports: PortRange,
    /// nftables' `nft`, through which berth publishes ports in its own table.
    pub nft: PathBuf,
    /// A static init bound into containers with `initProcessEnabled` (Debian's tini).
    pub init_binary: PathBuf,
    /// Seconds from SIGTERM to SIGKILL for a container without `stopTimeout` (the ECS
    /// agent's `ECS_CONTAINER_STOP_TIMEOUT`).
    pub container_stop_timeout_secs: u64,
    /// Seconds between the autoscaler's samples of each scaled service.
    pub autoscale_interval_secs: u64,
    /// Seconds of samples the autoscaler averages.
    pub autoscale_window_secs: u64,
    /// Isolation of a task whose caller does not choose: `container` or `microvm`.
    pub default_isolation: Isolation,
    /// Isolation of a definition whose `requiresCompatibilities` names only FARGATE.
    pub fargate_isolation: Isolation,
    /// Debian's cloud kernel unpacked (`packaging/fetch-guest-kernel DIR`), for microVMs.
    pub vm_kernel_dir: PathBuf,
    /// The VMM: QEMU's x86_64 system emulator (its `-M microvm` machine).
    pub vmm: PathBuf,
    /// `auto` (KVM where `/dev/kvm` opens, else emulation), `kvm` or `tcg`.
    pub vm_accel: VmAccel,
    /// MiB the books add to a microVM's memory for its VMM process.
    pub vm_overhead_mib: u64,
    /// Seconds a microVM gets from its VMM's start to its agent's hello.
    pub vm_boot_timeout_secs: u64,
    /// Seconds a running microVM's agent may go without answering before its task is
    /// stopped as lost.
    pub vm_agent_timeout_secs: u64,
    /// The guest agent binary; unset: `berth-agent` beside berthd.
    pub vm_agent: Option<PathBuf>,
    /// The user a microVM's VMM runs as (`root` keeps it root: a guest that breaks into its
    /// VMM then owns the host).
    pub vmm_user: String,
    /// May the `berth` group run `privileged` containers? (Root always may.)
    pub group_privileged: bool,
    /// May the group share the host's network, pid or ipc namespace?
    pub group_host_namespaces: bool,
    /// Directories the group's host volumes must be beneath; unset: any path.
    pub group_host_paths: Option<Vec<String>>,
    /// May the group give containers host devices?
    pub group_devices: bool,
    /// Capabilities the group may add; unset: any.
    pub group_capabilities: Option<Vec<String>>,
    /// May the group run tasks with `secrets` from `secrets_dir`?
    pub group_secrets: bool,
    /// A root-only directory of secret values, one file per `secrets[].valueFrom` (an SSM
    /// parameter's name or a Secrets Manager secret's name); unset: a task asking for
    /// secrets is refused at RunTask.
    pub secrets_dir: Option<PathBuf>,
    /// Seconds a stopped task is kept (its record, directory and logs) before berth forgets
    /// it; the journal keeps its logs after.
    pub stopped_task_retention_secs: u64,
    /// At most this many stopped tasks are kept; past it the oldest are forgotten first.
    pub stopped_task_max: usize,
    /// MiB a container's log file reaches before it rotates to `<name>.log.1` (one kept);
    /// 0: never. The journal has every line either way.
    pub log_max_mib: u64,
    /// MiB the state directory's filesystem keeps free: below it berth refuses new tasks,
    /// definitions and services (`RESOURCE:DISK`), so what it recorded always has room.
    pub min_free_disk_mib: u64,
    /// When RunTask pulls a task's images: `default` (those the store lacks), `always`,
    /// `once`, `prefer-cached` (the ECS agent's `ECS_IMAGE_PULL_BEHAVIOR`).
    pub image_pull_behavior: PullBehavior,
    /// Registry logins in Docker's `config.json` format (`docker login`, `skopeo login
    /// --authfile`), root's alone (mode 0600).
    pub registry_auth_file: PathBuf,
    /// Registries asked before Docker Hub for its images (`host[:port]`).
    pub registry_mirrors: Vec<String>,
    /// Registries spoken to over plain HTTP (`host[:port]`).
    pub insecure_registries: Vec<String>,
    /// PEM certificate authorities trusted for registries beside the system's.
    pub registry_ca_files: Vec<PathBuf>,
    /// Seconds a registry may stay silent (connecting or mid-blob) before the pull fails.
    pub image_pull_inactivity_timeout_secs: u64,
    /// Seconds a whole pull may take.
    pub image_pull_timeout_secs: u64,
    /// Blobs of one image fetched at once.
    pub image_pull_concurrency: usize,
    /// Seconds a pulled image may go unused by any task before it is removed (0: never; never
    /// with `prefer-cached`, as the ECS agent does). Imported images are never removed.
    pub image_cleanup_age_secs: u64,
    /// Where the ECS API (AWS JSON 1.1) listens; `""`: no ECS API.
    #[serde(deserialize_with = "listen_or_off")]
    pub ecs_api_listen: Option<SocketAddr>,
    /// The ECS API's access keys, root's alone: `{"keys": [{"accessKeyId", "secretAccessKey",
    /// "access": "read-only" | "read-write"}]}`. Absent: every request is refused.
    pub ecs_api_keys_file: PathBuf,
    /// The account and region in the ARNs the ECS API gives.
    pub ecs_api_account: String,
    pub ecs_api_region: String,
    /// The host's cluster, as the ECS API names it (`default` is accepted too).
    pub cluster_name: String,
}

/// How microVMs run guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmAccel {
    Auto,
    Kvm,
    Tcg,
}

/// A range of ports such as `49153-65535`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange(pub std::ops::RangeInclusive<u16>);

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<PortRange, String> {
        let parsed = s.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
        });
        match parsed {
            Some((a, b)) if a >= 1 && a <= b => Ok(PortRange(a..=b)),
            _ => Err(format!("\"{s}\" is not a port range such as 49153-65535")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("/var/lib/berth"),
            memory_reserve_mib: 256,
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9580)),
            metrics_refresh_ms: 5000,
            bus: BusChoice::System,
            cgroup_mount: PathBuf::from("/sys/fs/cgroup"),
            slice: "berth.slice".into(),
            runtime_dir: PathBuf::from("/run/berth"),
            pids_max: 4096,
            reserved_ports: vec![22],
            bridge_name: "berth0".into(),
            bridge_subnet: Subnet {
                network: std::net::Ipv4Addr::new(172, 29, 0, 0),
                prefix: 16,
            },
            ephemeral_ports: PortRange(49153..=65535),
            nft: PathBuf::from("/usr/sbin/nft"),
            init_binary: PathBuf::from("/usr/bin/tini-static"),
            container_stop_timeout_secs: 30,
            autoscale_interval_secs: 5,
            autoscale_window_secs: 30,
            default_isolation: Isolation::Container,
            fargate_isolation: Isolation::Microvm,
            vm_kernel_dir: PathBuf::from("/var/lib/berth/guest-kernel"),
            vmm: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            vm_accel: VmAccel::Auto,
            // QEMU under TCG was seen at 210-240 MiB RSS whatever the guest's size.
            vm_overhead_mib: 256,
            vm_boot_timeout_secs: 300,
            vm_agent_timeout_secs: 60,
            vm_agent: None,
            vmm_user: "berth-vmm".into(),
            // Root-equivalent by default, as Docker's group is; the README says so.
            group_privileged: true,
            group_host_namespaces: true,
            group_host_paths: None,
            group_devices: true,
            group_capabilities: None,
            group_secrets: true,
            secrets_dir: None,
            stopped_task_retention_secs: 24 * 3600,
            stopped_task_max: 1000,
            log_max_mib: 64,
            min_free_disk_mib: 100,
            image_pull_behavior: PullBehavior::Default,
            registry_auth_file: PathBuf::from("/etc/berth/registry-auth.json"),
            registry_mirrors: Vec::new(),
            insecure_registries: Vec::new(),
            registry_ca_files: Vec::new(),
            image_pull_inactivity_timeout_secs: 60,
            image_pull_timeout_secs: 7200,
            image_pull_concurrency: 3,
            image_cleanup_age_secs: 3 * 3600,
            ecs_api_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9581))),
            ecs_api_keys_file: PathBuf::from("/etc/berth/ecs-api-keys.json"),
            ecs_api_account: "000000000000".into(),
            ecs_api_region: "us-east-1".into(),
            cluster_name: "default".into(),
        }
    }
}

impl Config {
    /// How many stopped tasks, and for how long, berth keeps.
    pub fn retention(&self) -> crate::engine::retention::Retention {
        crate::engine::retention::Retention {
            max_age_us: self.stopped_task_retention_secs.saturating_mul(1_000_000),
            max_count: self.stopped_task_max,
        }
    }

    /// The registry settings, for the image puller.
    pub fn pull_config(&self) -> PullConfig {
        PullConfig {
            auth_file: self.registry_auth_file.clone(),
            mirrors: self.registry_mirrors.clone(),
            insecure: self.insecure_registries.clone(),
            ca_files: self.registry_ca_files.clone(),
            inactivity_timeout: std::time::Duration::from_secs(
                self.image_pull_inactivity_timeout_secs.max(1),
            ),
            timeout: std::time::Duration::from_secs(self.image_pull_timeout_secs.max(1)),
            concurrency: self.image_pull_concurrency.max(1),
            secrets_dir: self.secrets_dir.clone(),
        }
    }

    /// Seconds a pulled image may go unused before cleanup removes it; None: never.
    pub fn image_cleanup_age(&self) -> Option<u64> {
        let off = self.image_cleanup_age_secs == 0
            || self.image_pull_behavior == PullBehavior::PreferCached;
        (!off).then_some(self.image_cleanup_age_secs)
    }

    /// What the `berth` group may ask for, from the `group_*` keys.
    pub fn group_policy(&self) -> crate::spec::policy::GroupPolicy {
        crate::spec::policy::GroupPolicy {
            privileged: self.group_privileged,
            host_namespaces: self.group_host_namespaces,
            host_paths: self.group_host_paths.clone(),
            devices: self.group_devices,
            capabilities: self.group_capabilities.clone(),
            secrets: self.group_secrets,
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        check::check(&config).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// Loads `explicit` if given (it must exist), else the default path if it exists, else
    /// the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = explicit.unwrap_or(Path::new(DEFAULT_PATH));
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// An address, or `""` for a listener turned off.
fn listen_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not ADDRESS:PORT ({e}); \"\" turns it off"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_too_short_to_read_a_stopped_task_is_refused_by_name() {
        for (text, said) in [
            (
                "stopped_task_retention_secs = 0",
                "stopped_task_retention_secs = 0: at least 10",
            ),
            ("stopped_task_max = 0", "stopped_task_max = 0: at least 1"),
        ] {
            let e = Config::parse(text, Path::new("b.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(said), "{e}");
        }
        let c = Config::parse(
            "stopped_task_retention_secs = 30\nstopped_task_max = 5\nlog_max_mib = 1\nmin_free_disk_mib = 16\nsecrets_dir = \"/etc/berth/secrets\"",
            Path::new("b.toml"),
        )
        .unwrap();
        assert_eq!(c.retention().max_age_us, 30_000_000);
        assert_eq!(c.retention().max_count, 5);
        assert_eq!(
            c.secrets_dir.as_deref(),
            Some(Path::new("/etc/berth/secrets"))
        );
    }

    #[test]
    fn registry_keys_are_read() {
        let c = Config::parse(
            "image_pull_behavior = \"prefer-cached\"\nregistry_mirrors = [\"mirror.test:5000\"]\ninsecure_registries = [\"lab:5000\"]\nregistry_ca_files = [\"/etc/berth/ca.pem\"]\nimage_pull_inactivity_timeout_secs = 5\n",
            Path::new("b.toml"),
        )
        .unwrap();
        assert_eq!(c.image_pull_behavior, PullBehavior::PreferCached);
        let p = c.pull_config();
        assert_eq!(p.mirrors, ["mirror.test:5000"]);
        assert_eq!(p.insecure, ["lab:5000"]);
        assert_eq!(p.inactivity_timeout.as_secs(), 5);
        assert_eq!(
            c.image_cleanup_age(),
            None,
            "prefer-cached keeps every image"
        );
        assert_eq!(Config::default().image_cleanup_age(), Some(3 * 3600));
        let e = Config::parse("image_pull_behavior = \"sometimes\"", Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sometimes") || e.contains("image_pull_behavior"),
            "{e}"
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(
            Config::parse("", Path::new("x")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn keys_are_read() {
        let c = Config::parse(
            "state_dir = \"/tmp/s\"\nmemory_reserve_mib = 512\nmetrics_listen = \"0.0.0.0:9100\"\nbus = \"unix:path=/run/b\"\ncontainer_stop_timeout_secs = 7\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(c.memory_reserve_mib, 512);
        assert_eq!(c.metrics_listen.port(), 9100);
        assert_eq!(c.bus, BusChoice::Address("unix:path=/run/b".into()));
        assert_eq!(c.container_stop_timeout_secs, 7);
        assert_eq!(Config::default().container_stop_timeout_secs, 30);
    }

    #[test]
    fn bridge_keys_are_checked() {
        let c = Config::parse(
            "bridge_subnet = \"10.77.0.0/24\"\nephemeral_ports = \"40000-40100\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.bridge_subnet.to_string(), "10.77.0.0/24");
        assert_eq!(c.ephemeral_ports.0, 40000..=40100);
        let e = Config::parse("bridge_subnet = \"10.77.0.1/24\"\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("10.77.0.1/24"), "{e}");
        let e = Config::parse("ephemeral_ports = \"9-1\"\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("9-1"), "{e}");
    }

    #[test]
    fn unknown_key_names_the_file_and_key() {
        let err = Config::parse("memory_reserve = 5\n", Path::new("/etc/berth/berthd.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/berth/berthd.toml"), "{err}");
        assert!(err.contains("memory_reserve"), "{err}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/berthd.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/berthd.toml"));
    }
}
