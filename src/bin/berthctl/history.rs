//! How far back `berthctl ps --all` goes: the daemon's retention of stopped tasks, said in
//! words a person reads at a glance.

use berth::dbus::client::ManagerProxy;

/// "stopped tasks are kept 1d (at most 1000); ...; the oldest kept stopped 3h 2m ago".
pub async fn line(m: &ManagerProxy<'_>) -> anyhow::Result<String> {
    let (secs, count) = m.stopped_task_retention().await?;
    let oldest = m.oldest_stopped_task().await?;
    let kept = format!(
        "stopped tasks are kept {} (at most {count}); older ones are in the journal only",
        human_duration(secs)
    );
    Ok(match oldest {
        0 => format!("{kept}; none is kept now"),
        us => format!(
            "{kept}; the oldest kept stopped {} ago",
            human_duration(berth::clock::now_seconds().saturating_sub(us / 1_000_000))
        ),
    })
}

/// `90061` as `1d 1h`, `3600` as `1h`, `59` as `59s`: the two largest units.
fn human_duration(secs: u64) -> String {
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let parts: Vec<String> = units
        .iter()
        .scan(secs, |left, (name, size)| {
            let n = *left / size;
            *left %= size;
            Some((n, name))
        })
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n}{name}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_as_their_two_largest_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(90_061), "1d 1h");
        assert_eq!(human_duration(86_400), "1d");
        assert_eq!(human_duration(3_661), "1h 1m");
    }
}
