//! The checks across a parsed config's keys that serde cannot make alone: each refusal names
//! the key, the value and what to do.

use std::net::SocketAddr;

use super::Config;

/// The shortest `vm_agent_timeout_secs`: two pings' time.
pub const MIN_AGENT_TIMEOUT_SECS: u64 = 10;

/// The shortest `stopped_task_retention_secs`.
pub const MIN_RETENTION_SECS: u64 = 10;

/// The shortest `metrics_refresh_ms` but 0 (off): a shorter one would keep a thread reading
/// every container's cgroup files all the time.
pub const MIN_METRICS_REFRESH_MS: u64 = 250;

/// What is wrong with `config`, if anything.
pub fn check(config: &Config) -> Result<(), String> {
    // The shim pings a microVM's agent every 5 s: a shorter silence is no sign of loss.
    if config.vm_agent_timeout_secs < MIN_AGENT_TIMEOUT_SECS {
        return Err(format!(
            "vm_agent_timeout_secs = {}: at least {MIN_AGENT_TIMEOUT_SECS} (the agent is \
             pinged every 5 s)",
            config.vm_agent_timeout_secs
        ));
    }
    let refresh = config.metrics_refresh_ms;
    if refresh != 0 && refresh < MIN_METRICS_REFRESH_MS {
        return Err(format!(
            "metrics_refresh_ms = {refresh}: at least {MIN_METRICS_REFRESH_MS}, or 0 to read \
             the tasks' series for each scrape"
        ));
    }
    listeners(config)?;
    // A task forgotten the moment it stops could not be waited on or described.
    let too_short = [
        (
            "stopped_task_retention_secs",
            config.stopped_task_retention_secs,
            MIN_RETENTION_SECS,
        ),
        ("stopped_task_max", config.stopped_task_max as u64, 1),
    ]
    .into_iter()
    .find(|(_, v, min)| v < min);
    if let Some((key, v, min)) = too_short {
        return Err(format!(
            "{key} = {v}: at least {min} (a stopped task must be there to be read)"
        ));
    }
    Ok(())
}

/// Two of berthd's listeners on one address: the second bind would stop berthd.
fn listeners(config: &Config) -> Result<(), String> {
    let Some(a) = config.ecs_api_listen else {
        return Ok(());
    };
    let m = config.metrics_listen;
    let any = |x: SocketAddr| x.ip().is_unspecified();
    if m.port() == a.port() && (m.ip() == a.ip() || any(m) || any(a)) {
        return Err(format!(
            "metrics_listen = \"{m}\" and ecs_api_listen = \"{a}\" take one port: \
             move one (ecs_api_listen = \"\" turns the ECS API off)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn an_agent_timeout_shorter_than_two_pings_is_refused_by_name() {
        let e = Config::parse("vm_agent_timeout_secs = 3", Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vm_agent_timeout_secs = 3: at least 10"), "{e}");
    }

    #[test]
    fn a_metrics_refresh_too_short_is_refused_and_zero_turns_it_off() {
        let p = Path::new("b.toml");
        let e = Config::parse("metrics_refresh_ms = 10", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics_refresh_ms = 10: at least 250"), "{e}");
        assert_eq!(
            Config::parse("metrics_refresh_ms = 0", p)
                .unwrap()
                .metrics_refresh_ms,
            0
        );
        assert_eq!(Config::parse("", p).unwrap().metrics_refresh_ms, 5000);
    }

    #[test]
    fn the_ecs_api_turns_off_with_an_empty_address_and_may_not_share_the_metrics_port() {
        let p = Path::new("/etc/berth/berthd.toml");
        let c = Config::parse("ecs_api_listen = \"\"\n", p).unwrap();
        assert_eq!(c.ecs_api_listen, None);
        let c = Config::parse("ecs_api_listen = \"127.0.0.1:9600\"\n", p).unwrap();
        assert_eq!(c.ecs_api_listen.map(|a| a.port()), Some(9600));
        let e = Config::parse("metrics_listen = \"127.0.0.1:9581\"\n", p).unwrap_err();
        assert!(e.to_string().contains("take one port"), "{e}");
        let e = Config::parse("metrics_listen = \"0.0.0.0:9581\"\n", p).unwrap_err();
        assert!(
            e.to_string()
                .contains("ecs_api_listen = \"\" turns the ECS API off"),
            "{e}"
        );
        assert!(Config::parse("ecs_api_listen = \"nope\"\n", p).is_err());
    }
}
