//! Services' load balancers in the engine: the checks at create and update, the listener
//! ports in the books, the loop keeping the kernel's targets those the services have now
//! (serving, probed, not draining), and draining: a task a deployment or a scale-in stops
//! leaves the balancer first and is stopped when its connections end or its delay passes.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use super::services::{started_by, view, ServiceError};
use super::{Engine, Task, TaskError};
use crate::balance::rules::{self, Listener};
use crate::balance::{self, Balancer, LoadBalancer, Target, TargetState};
use crate::runtime::report::HealthStatus;
use crate::service::model::Drain;
use crate::service::Service;

/// One target as the faces show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    pub listener: SocketAddrV4,
    pub target: Target,
    pub state: TargetState,
    /// Open connections the balancer sent it (conntrack).
    pub active: u32,
    /// New connections it has taken since it joined (nft's counter), when known.
    pub new: Option<u64>,
}

impl Engine {
    pub fn with_balancer(mut self, balancer: Arc<Balancer>) -> Engine {
        self.balancer = Some(balancer);
        self
    }

    /// Refuses `lbs` that `reference`'s tasks could not serve, naming the field.
    pub(super) fn check_load_balancers(
        &self,
        lbs: &[LoadBalancer],
        reference: &str,
    ) -> Result<(), ServiceError> {
        if lbs.is_empty() {
            return Ok(());
        }
        if self.balancer.is_none() {
            return Err(ServiceError::Invalid(
                "loadBalancers: berthd has no bridge network (see its log at start), so it cannot balance; fix the bridge or remove loadBalancers".into(),
            ));
        }
        let def = self
            .describe_definition(reference)
            .map_err(TaskError::from)?
            .definition;
        balance::check(lbs, &def, reference).map_err(ServiceError::Invalid)
    }

    /// Holds the listeners' ports in the books; a port a task or another listener has, or a
    /// process on the host listens on, is refused naming the holder.
    pub(super) fn hold_listeners(
        state: &mut super::State,
        s: &Service,
    ) -> Result<(), ServiceError> {
        let ports = s.listener_ports();
        state
            .books
            .hold_listeners(&s.name, &ports)
            .map_err(|r| ServiceError::Task(TaskError::Capacity(r)))?;
        for lb in &s.load_balancers {
            // Taken and let go at once: only to learn whether a process has the port, whose
            // traffic the listener would take.
            if let Err(e) = std::net::TcpListener::bind(lb.listen) {
                state.books.release_listeners(&s.name, &ports);
                let msg = if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(
                        "RESOURCE:PORTS: tcp/{} is in use on the host ({e}): a process listens on {} (`ss -ltnp 'sport = :{}'` names it)",
                        lb.listen.port(),
                        lb.listen,
                        lb.listen.port()
                    )
                } else {
                    format!(
                        "loadBalancers: cannot listen on {} ({e}): is {} an address of this host?",
                        lb.listen,
                        lb.listen.ip()
                    )
                };
                return Err(ServiceError::Invalid(msg));
            }
        }
        Ok(())
    }

    /// The service's tasks as the balancer sees them, with their states for each listener.
    fn candidates(s: &Service, tasks: &[&Task]) -> Vec<Vec<(Target, TargetState)>> {
        let views: Vec<balance::TaskView<'_>> = tasks
            .iter()
            .map(|t| balance::TaskView {
                id: &t.id,
                serving: !s.deleting && view(t, false).healthy(),
                draining: s.draining.contains_key(&t.id) && !t.is_stopped(),
                network: &t.network,
            })
            .collect();
        s.load_balancers
            .iter()
            .map(|lb| balance::targets(lb, &views))
            .collect()
    }

    /// Every listener with the targets that may take new connections now (before probing).
    fn wanted_listeners(&self) -> Vec<Listener> {
        let state = self.lock();
        let mut out = Vec::new();
        for s in state.services.values() {
            let by = started_by(&s.name);
            let tasks: Vec<&Task> = state
                .tasks
                .values()
                .filter(|t| t.started_by.as_deref() == Some(by.as_str()))
                .collect();
            for (index, (lb, targets)) in s
                .load_balancers
                .iter()
                .zip(Self::candidates(s, &tasks))
                .enumerate()
            {
                // A port a task took while the service's listener was down (restored with a
                // clash): the listener waits, rather than take the task's published port.
                if !state.books.holds_listener(&s.name, lb.listener_port()) {
                    continue;
                }
                out.push(Listener {
                    service: s.name.clone(),
                    index,
                    listen: lb.listen,
                    targets: targets
                        .into_iter()
                        .filter(|(_, st)| *st == TargetState::Healthy)
                        .map(|(t, _)| t)
                        .collect(),
                });
            }
        }
        out
    }

    /// Keeps the kernel's listeners and targets those the services have, at every change of
    /// the engine's and at least every `every`, until berthd stops.
    pub async fn balance(self, every: Duration) {
        let Some(b) = self.balancer.clone() else {
            return;
        };
        if let Err(e) = b.adopt() {
            tracing::warn!(error = %e, "cannot read the load balancer's rules");
        }
        let mut changes = self.subscribe();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = changes.recv() => {}
            }
            self.sync_balancer(&b).await;
        }
    }

    /// One round: the proven targets applied at once (so a target that went leaves without
    /// waiting on any probe), then the new ones probed together and, if still wanted after
    /// the probes, added.
    async fn sync_balancer(&self, b: &Balancer) {
        let proven_only = |mut ls: Vec<Listener>| {
            for l in &mut ls {
                let keep: Vec<Target> = l
                    .targets
                    .iter()
                    .filter(|t| b.proven(l, t))
                    .cloned()
                    .collect();
                l.targets = keep;
            }
            ls
        };
        let wanted = self.wanted_listeners();
        let fresh: Vec<(Listener, Target)> = wanted
            .iter()
            .flat_map(|l| {
                l.targets
                    .iter()
                    .filter(|t| !b.proven(l, t))
                    .map(move |t| (l.clone(), t.clone()))
            })
            .collect();
        if let Err(e) = b.apply(proven_only(wanted)) {
            tracing::warn!(error = %e, "load balancer");
            return;
        }
        if fresh.is_empty() {
            return;
        }
        let answers = futures_util::future::join_all(fresh.iter().map(|(_, t)| b.probe(t))).await;
        let mut any = false;
        for ((l, t), ok) in fresh.iter().zip(answers) {
            if ok {
                b.prove(l, t);
                any = true;
            }
        }
        // Read again: a task may have stopped while the probes ran.
        if any {
            if let Err(e) = b.apply(proven_only(self.wanted_listeners())) {
                tracing::warn!(error = %e, "load balancer");
            }
        }
    }

    /// The service's tasks as its scheduler sees them. Behind a load balancer a task counts
    /// as healthy only once it takes connections there (ECS waits on the target group's
    /// health checks alike), so a rollout never stops the old tasks before the new ones
    /// serve. `None` until the balancer has synced since berthd started: before, no task
    /// would look healthy and a rollout would stop serving ones.
    pub(super) fn balanced_views(
        &self,
        s: &Service,
        tasks: &[Task],
    ) -> Option<Vec<crate::service::scheduler::TaskView>> {
        let balanced = self
            .balancer
            .as_ref()
            .filter(|_| !s.load_balancers.is_empty());
        if balanced.is_some_and(|b| !b.synced()) {
            return None;
        }
        let views = tasks.iter().map(|t| {
            let mut v = view(t, s.draining.contains_key(&t.id));
            if let Some(b) = balanced {
                if v.health != HealthStatus::Unhealthy && !b.in_service(&s.name, &t.id) {
                    v.checked = true;
                    v.health = HealthStatus::Unknown;
                }
            }
            v
        });
        Some(views.collect())
    }

    /// Says in the service's events why its load balancer's rules cannot be made, while that
    /// lasts (the same words once). Whether it added the event.
    pub(super) fn balancer_trouble(&self, s: &mut Service, now: u64) -> bool {
        if s.load_balancers.is_empty() {
            return false;
        }
        let Some(e) = self.balancer.as_ref().and_then(|b| b.last_error()) else {
            return false;
        };
        let msg = format!(
            "(service {}) the load balancer's rules cannot be made, so its tasks do not count as healthy: {e}",
            s.name
        );
        s.event(now, msg)
    }

    /// Takes `id` out of the balancer instead of stopping it now, when it takes traffic there
    /// and the service gives it a delay. Whether it did.
    pub(super) fn start_draining(&self, s: &mut Service, id: &str, reason: &str, now: u64) -> bool {
        let Some(b) = &self.balancer else {
            return false;
        };
        if s.draining.contains_key(id) || !b.in_service(&s.name, id) {
            return false;
        }
        // A delay of 0 drains too: the task must leave the map before it stops, or new
        // connections would reach a server going down.
        let delay = s
            .load_balancers
            .iter()
            .map(|l| l.deregistration_delay_seconds)
            .max()
            .unwrap_or(0);
        let drain = Drain {
            since: now,
            until: now + u64::from(delay) * 1_000_000,
            reason: reason.to_string(),
        };
        s.draining.insert(id.to_string(), drain);
        let msg = format!("(service {}) draining task {id} ({reason}): no new connections; it stops when its connections end, at most {delay} s from now", s.name);
        s.event(now, msg);
        true
    }

    /// Stops the draining tasks whose connections ended or whose delay passed (all of them
    /// when the service is being deleted, or when berthd has no balancer since a restart).
    /// Whether the service changed.
    pub(super) fn finish_draining(
        &self,
        s: &mut Service,
        tasks: &[Task],
        now: u64,
    ) -> Result<bool, ServiceError> {
        if s.draining.is_empty() {
            return Ok(false);
        }
        let b = self.balancer.as_ref();
        // Without the kernel's table no connection can be seen: only the delay ends a drain.
        let active = b.and_then(|b| b.active());
        let mut changed = false;
        for (id, d) in s.draining.clone() {
            let Some(t) = tasks.iter().find(|t| t.id == id && !t.is_stopped()) else {
                s.draining.remove(&id);
                changed = true;
                continue;
            };
            // Until the rules no longer send it connections, new ones may still arrive.
            let out = b.is_some_and(|b| b.synced() && !b.in_service(&s.name, &id));
            let open: Option<u32> = active.as_ref().map(|active| {
                s.load_balancers
                    .iter()
                    .filter_map(|lb| {
                        let a = t.network.interface_of(&lb.container_name)?.address;
                        active.get(&(a, lb.container_port)).copied()
                    })
                    .sum()
            });
            let why = if s.deleting {
                "the service is being deleted"
            } else if b.is_none() {
                "berthd has no load balancer since it started"
            } else if now >= d.until && (out || d.until > d.since) {
                "its deregistration delay passed"
            } else if out && open == Some(0) {
                "its connections ended"
            } else {
                continue;
            };
            self.stop_task(&id, &d.reason)?;
            s.draining.remove(&id);
            let open = open.map_or("unknown".to_string(), |n| n.to_string());
            let msg = format!(
                "(service {}) task {id} drained ({why}, connections open: {open}): stopping it",
                s.name
            );
            s.event(now, msg);
            changed = true;
        }
        Ok(changed)
    }

    /// New connections per minute per target the service's listeners took since the last
    /// call (ECS's `ALBRequestCountPerTarget`, by connection); `None` on the first call or
    /// without a load balancer.
    pub(super) fn requests_per_target(&self, name: &str, now: u64) -> Option<f64> {
        let b = self.balancer.as_ref()?;
        let s = self.service(name).ok()?;
        if s.load_balancers.is_empty() {
            return None;
        }
        let prefixes: Vec<String> = (0..s.load_balancers.len())
            .map(|index| format!("{}.", rules::dispatch_chain(&s.name, index)))
            .collect();
        let counters: std::collections::BTreeMap<String, u64> = b
            .new_connections()
            .ok()?
            .into_iter()
            .filter(|(c, _)| prefixes.iter().any(|p| c.starts_with(p.as_str())))
            .collect();
        let before = self
            .sampler()
            .connections
            .insert(name.to_string(), (now, counters.clone()));
        let (at, before) = before.filter(|(at, _)| now > *at)?;
        Some(balance::per_target_per_minute(&before, &counters, now - at))
    }

    /// A service's targets with their states and connections (`None`: every service's).
    pub fn targets_report(&self, only: Option<&str>) -> Vec<(String, Vec<TargetReport>)> {
        let Some(b) = &self.balancer else {
            return Vec::new();
        };
        let services: Vec<Service> = self
            .services()
            .into_iter()
            .filter(|s| !s.load_balancers.is_empty() && only.is_none_or(|n| n == s.name))
            .collect();
        if services.is_empty() {
            return Vec::new();
        }
        let active = b.active().unwrap_or_default();
        let counters = b.new_connections().unwrap_or_default();
        services
            .into_iter()
            .map(|s| {
                let tasks = self.service_tasks(&s.name);
                let refs: Vec<&Task> = tasks.iter().collect();
                let mut v = Vec::new();
                for (index, (lb, targets)) in s
                    .load_balancers
                    .iter()
                    .zip(Self::candidates(&s, &refs))
                    .enumerate()
                {
                    for (target, mut state) in targets {
                        if state == TargetState::Healthy && !b.in_service(&s.name, &target.task_id)
                        {
                            state = TargetState::Initial;
                        }
                        v.push(TargetReport {
                            listener: lb.listen,
                            active: active
                                .get(&(target.address, target.port))
                                .copied()
                                .unwrap_or(0),
                            new: counters
                                .get(&rules::target_chain(&s.name, index, &target.task_id))
                                .copied(),
                            target,
                            state,
                        });
                    }
                }
                (s.name, v)
            })
            .collect()
    }
}
