//! The balancer's hands: applies the listeners the engine wants to the kernel (one nft
//! transaction per change, nothing when nothing changed), remembers what it applied, finds
//! what a previous berthd left (re-adopted unchanged), probes a new target before it takes
//! traffic, and reads the connection counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::conntrack::{self, Counts};
use super::rules::{self, Listener};
use super::Target;
use crate::network::nft::{Nft, NftError};

#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error("load balancer rules: {0}")]
    Nft(#[from] NftError),
}

#[derive(Debug, Default)]
struct Applied {
    /// `None` until the first sync, which re-adopts what the kernel has.
    listeners: Option<Vec<Listener>>,
    /// Target chains that took traffic (probed, or found at start): they need no new probe.
    proven: BTreeSet<String>,
    told_no_conntrack: bool,
    /// The balancer's chains the kernel held at start (`adopt`), for the first sync.
    adopted: Option<BTreeSet<String>>,
    /// Why the last apply failed; cleared by one that works.
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct Balancer {
    nft: Nft,
    conntrack: PathBuf,
    probe_timeout: Duration,
    applied: Mutex<Applied>,
}

impl Balancer {
    pub fn new(nft: &Path, conntrack: &Path, probe_timeout: Duration) -> Balancer {
        Balancer {
            nft: Nft::new(nft),
            conntrack: conntrack.to_owned(),
            probe_timeout,
            applied: Mutex::new(Applied::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the kernel's listeners `desired`. The first call reads berth's table and keeps
    /// what a previous berthd made that is still wanted.
    pub fn apply(&self, desired: Vec<Listener>) -> Result<(), BalancerError> {
        let result = self.apply_locked(desired);
        self.lock().last_error = result.as_ref().err().map(|e| e.to_string());
        result
    }

    /// Why the kernel's rules could not be made as wanted, while that lasts.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    fn apply_locked(&self, desired: Vec<Listener>) -> Result<(), BalancerError> {
        let mut applied = self.lock();
        let adopted = applied.adopted.take();
        let existing = match (applied.listeners.is_some(), adopted) {
            (true, _) => None,
            (false, Some(found)) => Some(found),
            (false, None) => Some(rules::chains_in(&self.nft.list_table()?)),
        };
        let before = applied.listeners.clone().unwrap_or_default();
        if let Some(doc) = rules::sync(&before, &desired, existing.as_ref()) {
            self.nft.apply("load balancer", &doc)?;
        }
        let live: BTreeSet<String> = desired
            .iter()
            .flat_map(|l| l.targets.iter().map(|t| l.target_chain(&t.task_id)))
            .collect();
        applied.proven.retain(|c| live.contains(c));
        applied.listeners = Some(desired);
        Ok(())
    }

    /// The chains a previous berthd left with traffic flowing: their targets need no probe.
    pub fn adopt(&self) -> Result<(), BalancerError> {
        let found = rules::chains_in(&self.nft.list_table()?);
        let mut applied = self.lock();
        applied.proven.extend(found.iter().cloned());
        applied.adopted = Some(found);
        Ok(())
    }

    /// Whether `l`'s target `t` has taken traffic (or answered a probe) already.
    pub fn proven(&self, l: &Listener, t: &Target) -> bool {
        self.lock().proven.contains(&l.target_chain(&t.task_id))
    }

    /// Whether the kernel has had the engine's listeners applied since berthd started.
    pub fn synced(&self) -> bool {
        self.lock().listeners.is_some()
    }

    pub fn prove(&self, l: &Listener, t: &Target) {
        self.lock().proven.insert(l.target_chain(&t.task_id));
    }

    /// Whether `task` is behind one of `service`'s listeners now.
    pub fn in_service(&self, service: &str, task: &str) -> bool {
        self.lock()
            .listeners
            .iter()
            .flatten()
            .any(|l| l.service == service && l.targets.iter().any(|t| t.task_id == task))
    }

    /// Whether the target accepts a TCP connection: a server still starting would refuse
    /// the connections sent to it.
    pub async fn probe(&self, t: &Target) -> bool {
        matches!(
            tokio::time::timeout(
                self.probe_timeout,
                tokio::net::TcpStream::connect(t.endpoint())
            )
            .await,
            Ok(Ok(_))
        )
    }

    /// Open connections by target address and port; `None` where the kernel shows no table
    /// (then said once in the log).
    pub fn active(&self) -> Option<Counts> {
        let counts = conntrack::read(&self.conntrack);
        if counts.is_none() && !std::mem::replace(&mut self.lock().told_no_conntrack, true) {
            tracing::warn!(path = %self.conntrack.display(), "no connection table: draining tasks wait their whole deregistration delay (load the nf_conntrack module)");
        }
        counts
    }

    /// New connections each target chain has taken since it was made.
    pub fn new_connections(&self) -> Result<BTreeMap<String, u64>, BalancerError> {
        Ok(rules::counters_in(&self.nft.list_table()?))
    }
}
