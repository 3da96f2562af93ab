//! The human table: each figure with the target it is held to and a verdict beside it.

use serde_json::Value;

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn f(v: &Value, digits: usize) -> String {
    num(v).map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "meets target",
        Some(false) => "MISSES target",
        None => "not measured",
    }
}

/// The largest count measured in a `count → value` map.
fn at_most(map: &Value) -> (String, Value) {
    map.as_object()
        .and_then(|o| {
            o.iter()
                .max_by_key(|(k, _)| k.parse::<usize>().unwrap_or(0))
                .map(|(k, v)| (k.clone(), v.clone()))
        })
        .unwrap_or_default()
}

pub fn table(v: &Value) -> String {
    let l = &v["launch"];
    let mut out = String::new();
    let mut line = |s: String| {
        out += &s;
        out.push('\n');
    };
    let env = &v["env"];
    line(format!(
        "berth bench: commit {} · kernel {} · {} CPUs · emulated: {} · {} build · {}",
        env["commit"].as_str().unwrap_or("?"),
        env["kernel"].as_str().unwrap_or("?"),
        env["cpus"].as_str().unwrap_or("?"),
        env["emulated"].as_str().unwrap_or("?"),
        env["profile"].as_str().unwrap_or("?"),
        env["date"].as_str().unwrap_or("?"),
    ));
    if env["emulated"] == "yes" {
        line("(emulated guest: absolute times mean little; the ratios carry over)".into());
    }
    line(String::new());
    line(format!(
        "{:<44} {:>10} {:>10}",
        "LAUNCH of /bin/true (ms)", "median", "p90"
    ));
    for (name, key) in [
        ("berth, D-Bus RunTask → STOPPED", "berth_ms"),
        ("berth, berthctl run --wait", "berthctl_ms"),
        ("crun run (same config.json and layers)", "crun_ms"),
        ("runc run (same config.json and layers)", "runc_ms"),
        ("berth, RunTask → RUNNING (sleep)", "to_running_ms"),
    ] {
        line(format!(
            "{name:<44} {:>10} {:>10}",
            f(&l[key]["median"], 1),
            f(&l[key]["p90"], 1)
        ));
    }
    let rc = num(&l["ratio_vs_crun"]);
    let rr = num(&l["ratio_vs_runc"]);
    line(format!(
        "berth / crun {:>6}  (target ≤ 1.2: {})",
        f(&l["ratio_vs_crun"], 2),
        verdict(rc.map(|r| r <= 1.2))
    ));
    line(format!(
        "berth / runc {:>6}  (target ≤ 0.5: {})",
        f(&l["ratio_vs_runc"], 2),
        verdict(rr.map(|r| r <= 0.5))
    ));
    line(String::new());
    line("WHERE ONE LAUNCH'S TIME GOES (ms)".into());
    let mut spans: Vec<(String, f64)> = l["spans_ms"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    spans.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (k, ms) in spans {
        line(format!("  {k:<58} {ms:>9.1}"));
    }
    line(String::new());
    let o = &v["overhead"];
    line(format!(
        "{:<8} {:>14} {:>14} {:>16} {:>16} {:>12}",
        "TASKS", "shim RSS KiB", "shim PSS KiB", "shim charge KiB", "berthd RSS KiB", "scrape ms"
    ));
    if let Some(counts) = o["berthd_rss_kib"].as_object() {
        let mut keys: Vec<&String> = counts.keys().collect();
        keys.sort_by_key(|k| k.parse::<usize>().unwrap_or(0));
        for k in keys {
            line(format!(
                "{k:<8} {:>14} {:>14} {:>16} {:>16} {:>12}",
                f(&o["shim_rss_kib"][k], 0),
                f(&o["shim_pss_kib"][k], 0),
                f(&o["shim_charge_kib"][k], 0),
                f(&o["berthd_rss_kib"][k], 0),
                f(&v["scrape"]["ms"][k], 1),
            ));
        }
    }
    let (n, pss) = at_most(&o["shim_pss_kib"]);
    line(format!(
        "shim PSS at {n} tasks: {} KiB (target ≤ 1024: {})",
        f(&pss, 0),
        verdict(num(&pss).map(|p| p <= 1024.0))
    ));
    let at_1000 = num(&o["berthd_rss_kib_at_1000_extrapolated"]);
    line(format!(
        "berthd RSS at 1000 tasks, extrapolated from the fitted slope ({} KiB/task): {} MiB (target ≤ 64: {})",
        f(&o["berthd_rss_kib_per_task"], 1),
        at_1000.map_or("-".into(), |k| format!("{:.1}", k / 1024.0)),
        verdict(at_1000.map(|k| k <= 64.0 * 1024.0))
    ));
    let s = &v["scrape"];
    let per = num(&s["us_per_container"]);
    line(format!(
        "scrape: {} µs per container end to end, the answer served from the rendering kept off the request path, linear fit R² {} (target ≤ 200 µs in the test guest, ≤ 20 ms at 1000 on a host: {}); that rendering, every metrics_refresh_ms while scraped (files + series): {} µs per container",
        f(&s["us_per_container"], 1),
        f(&s["linear_fit_r2"], 3),
        verdict(per.map(|p| p <= 200.0)),
        f(&s["berthd_us_per_container"], 1),
    ));
    let d = &v["density"];
    line(format!(
        "density: {} idle tasks RUNNING in {} s ({} tasks/s), stopped in {} s, books whole after: {}",
        d["tasks"],
        f(&d["start_s"], 1),
        f(&d["tasks_per_s"], 2),
        f(&d["stop_s"], 1),
        d["books_whole_after_stop"]
    ));
    out + &microvm_table(v)
}

/// The microVM rows beside the container's run to exit, or why there are none.
fn microvm_table(v: &Value) -> String {
    let vm = &v["microvm"];
    if let Some(why) = vm["skipped"].as_str() {
        return format!("\nmicroVM rows: not measured ({why})\n");
    }
    if vm.is_null() {
        return String::new();
    }
    let mut out = format!("\n{:<44} {:>10} {:>10}\n", "MICROVM (ms)", "median", "p90");
    for (name, row) in [
        (
            "bare VMM boot to an /init that powers off",
            &vm["bare_boot_ms"],
        ),
        (
            "microVM task, RunTask → STOPPED (/bin/true)",
            &vm["to_exit_ms"],
        ),
        (
            "microVM task, RunTask → RUNNING (sleep)",
            &vm["to_running_ms"],
        ),
        (
            "container task, RunTask → STOPPED (/bin/true)",
            &v["launch"]["berth_ms"],
        ),
    ] {
        out += &format!(
            "{name:<44} {:>10} {:>10}\n",
            f(&row["median"], 1),
            f(&row["p90"], 1)
        );
    }
    out += &format!(
        "VMM cgroup memory with the idle task's {} MiB guest: {} MiB (vm_overhead_mib books {} MiB beyond the guest)\n",
        vm["guest_memory_mib"],
        f(&vm["vmm_memory_mib"]["median"], 0),
        vm["vm_overhead_mib"],
    );
    let container = num(&v["launch"]["berth_ms"]["median"]);
    let in_vm = num(&vm["to_exit_ms"]["median"]);
    out += &format!(
        "microVM run to exit / bare boot {:>6}  (what berth adds on top of the VMM)\n",
        f(&vm["exit_vs_bare_boot"], 2)
    );
    out += &format!(
        "microVM run to exit / container run to exit {:>6}\n",
        match (in_vm, container) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}", a / b),
            _ => "-".into(),
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verdicts_follow_the_targets() {
        let v = json!({
            "env": {"commit": "abc", "emulated": "yes"},
            "launch": {"berth_ms": {"median": 120.0, "p90": 150.0}, "crun_ms": {"median": 100.0},
                       "ratio_vs_crun": 1.2, "ratio_vs_runc": 0.6, "spans_ms": {"shim.create": 30.0}},
            "overhead": {"shim_pss_kib": {"1": 900.0, "50": 1100.0},
                         "berthd_rss_kib": {"1": 10000.0, "50": 11000.0},
                         "berthd_rss_kib_per_task": 20.4, "berthd_rss_kib_at_1000_extrapolated": 30000.0},
            "scrape": {"ms": {"1": 1.0}, "us_per_container": 12.0, "linear_fit_r2": 0.99},
            "density": {"tasks": 50, "start_s": 10.0, "tasks_per_s": 5.0, "stop_s": 4.0,
                        "books_whole_after_stop": true},
            "microvm": {"bare_boot_ms": {"median": 2000.0}, "to_exit_ms": {"median": 3000.0},
                        "to_running_ms": {"median": 2500.0}, "exit_vs_bare_boot": 1.5,
                        "vmm_memory_mib": {"median": 300.0}, "guest_memory_mib": 128, "vm_overhead_mib": 256}
        });
        let t = table(&v);
        assert!(
            t.contains("berth / crun   1.20  (target ≤ 1.2: meets target)"),
            "{t}"
        );
        assert!(
            t.contains("berth / runc   0.60  (target ≤ 0.5: MISSES target)"),
            "{t}"
        );
        assert!(
            t.contains("shim PSS at 50 tasks: 1100 KiB (target ≤ 1024: MISSES target)"),
            "{t}"
        );
        assert!(t.contains("29.3 MiB (target ≤ 64: meets target)"), "{t}");
        assert!(t.contains("emulated guest"), "{t}");
        assert!(t.contains("microVM run to exit / bare boot   1.50"), "{t}");
        assert!(
            t.contains(
                "with the idle task's 128 MiB guest: 300 MiB (vm_overhead_mib books 256 MiB"
            ),
            "{t}"
        );
        assert!(
            t.contains("microVM run to exit / container run to exit   25.0"),
            "{t}"
        );
        let skipped = table(&json!({"microvm": {"skipped": "no kernel"}}));
        assert!(
            skipped.contains("microVM rows: not measured (no kernel)"),
            "{skipped}"
        );
    }
}
