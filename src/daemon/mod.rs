//! berthd's life: check the host, take the delegated cgroup subtree, register capacity, serve
//! D-Bus and `/metrics`, tell systemd, and stop cleanly on SIGTERM.

mod notify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::capacity::{Books, Bridge, HostPort};
use crate::cgroup::{self, CgroupTree};
use crate::config::Config;
use crate::dbus::{self, Manager};
use crate::engine::Engine;
use crate::engine::IsolationPolicy;
use crate::host;
use crate::image::ImageStore;
use crate::metrics::{self, Metrics};
use crate::network::{AddressPool, NetworkConfig, NetworkError, Networks};
use crate::runtime::{ContainerRuntime, RuntimeConfig, ScopeError, Scopes, VmSettings};
use crate::spec::Protocol;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Host(#[from] cgroup::HostCheckError),
    #[error(transparent)]
    Systemd(#[from] ScopeError),
    #[error(transparent)]
    Resources(#[from] host::HostError),
    #[error("cannot create the state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the metrics refresher thread")]
    MetricsRefresher(#[source] std::io::Error),
    #[error("cannot listen for metrics on {addr} (set metrics_listen in the config)")]
    MetricsListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error("cannot serve {name} on the D-Bus bus ({bus:?}); on the system bus the policy file org.berth.Agent1.conf must be installed")]
    Bus {
        name: &'static str,
        bus: crate::config::BusChoice,
        #[source]
        source: zbus::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Images(#[from] crate::image::ImageError),
    #[error("registry settings: {0}")]
    Registry(#[from] crate::image::pull::PullError),
    #[error("cannot find berthd's own executable (needed to start task shims)")]
    OwnExe(#[source] std::io::Error),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Network(crate::network::NetworkError),
    #[error(transparent)]
    EcsApiKeys(crate::ecs_api::keys::KeysError),
    #[error("cannot listen for the ECS API on {addr} (ecs_api_listen)")]
    EcsApiListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    /// Whether starting again unchanged would fail the same way: the host, the config or the
    /// state file needs an operator first (berthd exits 78 and systemd does not restart it).
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            DaemonError::Host(_)
                | DaemonError::EcsApiKeys(_)
                | DaemonError::Network(crate::network::NetworkError::Clash { .. })
                | DaemonError::Store(StoreError::TooNew { .. } | StoreError::Damaged { .. })
        )
    }
}

/// berth's bridge and nftables table. A subnet clashing with the host's routes stops berthd
/// (the operator must choose another); anything else missing (nft, a kernel feature) only
/// leaves bridge and awsvpc tasks refused, with the reason.
fn start_networks(config: &Config) -> Result<Result<Arc<Networks>, String>, DaemonError> {
    let started = Networks::start(NetworkConfig {
        bridge: config.bridge_name.clone(),
        subnet: config.bridge_subnet,
        netns_dir: config.runtime_dir.join("netns"),
        nft: config.nft.clone(),
    });
    match started {
        Ok(n) => {
            tracing::info!(bridge = %config.bridge_name, subnet = %config.bridge_subnet, "bridge ready");
            Ok(Ok(Arc::new(n)))
        }
        Err(e @ NetworkError::Clash { .. }) => Err(DaemonError::Network(e)),
        Err(e) => {
            tracing::warn!(error = %e, "no bridge: bridge and awsvpc tasks will be refused");
            Ok(Err(e.to_string()))
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    cgroup::check_host(&config.cgroup_mount, Path::new("/"))?;
    let scopes = Arc::new(Scopes::default());
    scopes.check().await?;
    let tree = CgroupTree::new(&config.cgroup_mount, &config.slice);
    tracing::info!(slice = %tree.slice_dir().display(), "tasks run in scopes of this slice");

    private_state_dir(&config.state_dir)?;
    let resources = host::read_resources(Path::new("/proc"), Path::new("/sys"))?;
    let store = Store::open(&config.state_dir)?;
    let images = Arc::new(ImageStore::open(&config.state_dir.join("images"))?);
    let (shim_exe, shim_args) = shim_command()?;
    let networks = start_networks(&config)?;
    // Listeners live in the table the bridge's setup made: without it, none.
    let balancer = networks.as_ref().ok().map(|_| {
        Arc::new(crate::balance::Balancer::new(
            &config.nft,
            Path::new("/proc/net/nf_conntrack"),
            std::time::Duration::from_secs(1),
        ))
    });
    let bridge = networks
        .as_ref()
        .map(|_| Bridge {
            addresses: AddressPool::new(config.bridge_subnet),
            ephemeral: config.ephemeral_ports.0.clone(),
        })
        .map_err(|e| e.clone());
    let runtime = ContainerRuntime::new(
        RuntimeConfig {
            tasks_dir: config.state_dir.join("tasks"),
            runtime_dir: config.runtime_dir.clone(),
            pids_max: config.pids_max,
            shim_exe,
            shim_args,
            vm: VmSettings {
                kernel_dir: config.vm_kernel_dir.clone(),
                vmm: config.vmm.clone(),
                accel: config.vm_accel,
                boot_timeout_secs: config.vm_boot_timeout_secs,
                agent_timeout_secs: config.vm_agent_timeout_secs,
                agent: match &config.vm_agent {
                    Some(a) => a.clone(),
                    None => agent_exe()?,
                },
                cache_dir: config.state_dir.join("vm"),
                vmm_user: config.vmm_user.clone(),
            },
            scopes,
            init_binary: config.init_binary.clone(),
            default_stop_timeout_secs: config.container_stop_timeout_secs,
            secrets_dir: config.secrets_dir.clone(),
            log_max_bytes: config.log_max_mib.saturating_mul(1024 * 1024),
        },
        tree.clone(),
        images.clone(),
        networks.ok(),
    );
    let puller = Arc::new(crate::image::pull::Puller::new(
        images.clone(),
        config.pull_config(),
    )?);
    let engine = Engine::new(
        Books::register(resources, config.memory_reserve_mib, host_ports(&config))
            .with_bridge(bridge),
        store,
        Arc::new(runtime),
        images,
        &host::boot_id(Path::new("/proc"))?,
    )?
    .with_isolation_policy(IsolationPolicy {
        default: config.default_isolation,
        fargate: config.fargate_isolation,
        vm_overhead_mib: config.vm_overhead_mib,
    })
    .with_host_sources(crate::spec::runnable::HostSources {
        secrets: config.secrets_dir.is_some(),
    })
    .with_retention(config.retention())
    .with_min_free_disk(config.min_free_disk_mib)
    .with_puller(puller.clone(), config.image_pull_behavior)
    .with_image_cleanup(config.image_cleanup_age());
    let engine = match balancer {
        Some(b) => engine.with_balancer(b),
        None => engine,
    };
    let refresh = std::time::Duration::from_millis(config.metrics_refresh_ms);
    let metrics = Metrics::new(engine.clone(), refresh)?;
    metrics
        .start_refresher()
        .map_err(DaemonError::MetricsRefresher)?;
    metrics.add(Box::new(puller.durations()))?;
    // Following before the watch loop runs, so no launch it completes goes uncounted.
    let lifecycle_task = tokio::spawn(metrics.lifecycle().follow(engine.clone()));
    let watch_task = tokio::spawn(engine.clone().watch());
    let services_task = tokio::spawn(engine.clone().schedule_services());
    let balance_task = tokio::spawn(engine.clone().balance(std::time::Duration::from_secs(1)));
    // Often enough that a short retention (a test's) is kept to, at most once a minute.
    let history_every = (config.stopped_task_retention_secs / 4).clamp(1, 60);
    let history_task = tokio::spawn(
        engine
            .clone()
            .keep_history(std::time::Duration::from_secs(history_every)),
    );
    let autoscale_task = tokio::spawn(engine.clone().autoscale(
        std::time::Duration::from_secs(config.autoscale_interval_secs.max(1)),
        std::time::Duration::from_secs(config.autoscale_window_secs.max(1)),
    ));

    let listener = TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| DaemonError::MetricsListen {
            addr: config.metrics_listen,
            source,
        })?;
    let metrics_task = tokio::spawn(metrics::serve(listener, metrics));
    let ecs_api_task = start_ecs_api(&config, &engine).await?;

    let bus_err = |source| DaemonError::Bus {
        name: dbus::BUS_NAME,
        bus: config.bus.clone(),
        source,
    };
    let conn = dbus::builder(&config.bus)
        .serve_at(
            dbus::MANAGER_PATH,
            Manager::new(engine.clone(), config.group_policy()),
        )
        .name(dbus::BUS_NAME)
        .build()
        .await
        .map_err(bus_err)?;
    let follow_task = tokio::spawn(dbus::follow(conn.clone(), engine.clone()));
    tracing::info!(metrics = %config.metrics_listen, "berthd serving {}", dbus::BUS_NAME);

    notify::ready();
    let watchdog = notify::spawn_watchdog();
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    notify::stopping();
    metrics_task.abort();
    if let Some(t) = ecs_api_task {
        t.abort();
    }
    watch_task.abort();
    services_task.abort();
    balance_task.abort();
    history_task.abort();
    autoscale_task.abort();
    lifecycle_task.abort();
    follow_task.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    Ok(())
}

/// The state directory, made if missing, closed to other users: it holds task logs, the
/// definitions' environment and the images (berth's tmpfiles entry makes it 0750 root:berth;
/// a directory made here by hand or by `create_dir_all` would be 0755).
fn private_state_dir(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| DaemonError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & !0o007))
            .map_err(err)?;
        tracing::warn!(
            dir = %dir.display(),
            "the state directory was open to every user (mode {mode:o}): closed it to others"
        );
    }
    Ok(())
}

/// How berthd starts a task's shim: `berth-shim` from beside berthd's own executable (a
/// smaller binary to page in at each launch), else `berthd shim`.
fn shim_command() -> Result<(PathBuf, Vec<String>), DaemonError> {
    let own = std::env::current_exe().map_err(DaemonError::OwnExe)?;
    let slim = own.with_file_name("berth-shim");
    if slim.is_file() {
        tracing::info!(shim = %slim.display(), "task shims run from berth-shim");
        return Ok((slim, Vec::new()));
    }
    tracing::info!(shim = %own.display(), "no berth-shim beside berthd: task shims run as `berthd shim`");
    Ok((own, vec!["shim".into()]))
}

/// `berth-agent` beside berthd: the initramfs of every microVM is built around it.
fn agent_exe() -> Result<PathBuf, DaemonError> {
    let own = std::env::current_exe().map_err(DaemonError::OwnExe)?;
    Ok(own.with_file_name("berth-agent"))
}

/// Ports tasks may not take: the configured ones over both protocols, and berthd's own.
fn host_ports(config: &Config) -> Vec<HostPort> {
    let mut v: Vec<HostPort> = config
        .reserved_ports
        .iter()
        .flat_map(|&port| {
            [Protocol::Tcp, Protocol::Udp].map(|protocol| HostPort { protocol, port })
        })
        .collect();
    v.push(HostPort {
        protocol: Protocol::Tcp,
        port: config.metrics_listen.port(),
    });
    if let Some(a) = config.ecs_api_listen {
        v.push(HostPort {
            protocol: Protocol::Tcp,
            port: a.port(),
        });
    }
    v
}

/// The ECS API's listener, with its keys read now (a bad keys file stops berthd naming it).
async fn start_ecs_api(
    config: &Config,
    engine: &Engine,
) -> Result<Option<tokio::task::JoinHandle<()>>, DaemonError> {
    let Some(addr) = config.ecs_api_listen else {
        return Ok(None);
    };
    let keys =
        crate::ecs_api::keys::load(&config.ecs_api_keys_file).map_err(DaemonError::EcsApiKeys)?;
    if keys.is_empty() {
        tracing::warn!(file = %config.ecs_api_keys_file.display(), "the ECS API has no access keys: every request is refused");
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::EcsApiListen { addr, source })?;
    let api = crate::ecs_api::http::Api {
        engine: engine.clone(),
        arns: crate::ecs_api::arn::Arns {
            region: config.ecs_api_region.clone(),
            account: config.ecs_api_account.clone(),
            cluster: config.cluster_name.clone(),
            instance: crate::ecs_api::arn::instance_id(&machine_id()),
        },
        keys,
        skew_secs: 300,
    };
    tracing::info!(listen = %addr, "ECS API listening");
    Ok(Some(tokio::spawn(crate::ecs_api::http::serve(
        listener, api,
    ))))
}

/// The host's machine id, or its name where the file is missing (a container or an initrd).
fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .filter(|id| !id.trim().is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .map(|h| h.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}
