//! `berthctl image import | pull | ls | rm`. An import sends berthd a tar stream over a file
//! descriptor, so berthd reads only what the caller can: the file as it is, or a directory
//! (an OCI image layout) tarred on the fly.

use std::path::Path;

use anyhow::Context;
use berth::dbus::client::ManagerProxy;
use serde_json::json;

use crate::wire;

pub async fn import(m: &ManagerProxy<'_>, path: &Path, name: Option<String>) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut writer = None;
    let fd: std::os::fd::OwnedFd = if meta.is_dir() {
        if !path.join("index.json").is_file() {
            anyhow::bail!(
                "{} is a directory without index.json: not an OCI image layout",
                path.display()
            );
        }
        let (r, w) = nix::unistd::pipe().context("cannot make a pipe")?;
        let dir = path.to_owned();
        writer = Some(std::thread::spawn(move || -> std::io::Result<()> {
            let mut b = tar::Builder::new(std::fs::File::from(w));
            b.follow_symlinks(false);
            b.append_dir_all(".", &dir)?;
            b.finish()
        }));
        r
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .into()
    };
    eprintln!("importing {} ...", path.display());
    let result = m.import_image(fd.into(), name.unwrap_or_default()).await;
    if let Some(w) = writer {
        // A failed import closes the pipe early; the daemon's error is the one to show.
        let sent = w.join();
        if result.is_ok() {
            sent.map_err(|_| anyhow::anyhow!("the archive writer panicked"))?
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
    }
    let (name, id) = result.map_err(wire)?;
    println!("{name} {id}");
    Ok(())
}

/// Pulls `reference`, showing berthd's progress of it until the pull returns: a bar redrawn
/// in place on a terminal, a line at each finished layer otherwise (logs, CI).
pub async fn pull(m: &ManagerProxy<'_>, reference: String, quiet: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let want = berth::image::reference::normalize(&reference);
    let call = m.pull_image(reference.clone());
    tokio::pin!(call);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(if tty {
        200
    } else {
        1000
    }));
    let mut last_layers = None;
    if !quiet {
        eprintln!("pulling {want} ...");
    }
    let result = loop {
        tokio::select! {
            r = &mut call => break r,
            _ = tick.tick() => {
                if quiet {
                    continue;
                }
                let Ok(pulls) = m.list_pulls().await else { continue };
                let Some((_, ld, lt, bd, bt)) = pulls.into_iter().find(|p| p.0 == want) else {
                    continue;
                };
                let line = progress_line(ld, lt, bd, bt);
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else if last_layers != Some(ld) && lt > 0 {
                    eprintln!("{line}");
                }
                last_layers = Some(ld);
            }
        }
    };
    if tty && !quiet && last_layers.is_some() {
        eprintln!();
    }
    let (name, id) = result.map_err(wire)?;
    println!("{name} {id}");
    Ok(())
}

/// `[=====>    ] 12.3/40.0 MB  2/5 layers`
fn progress_line(layers_done: u64, layers: u64, bytes_done: u64, bytes: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (bytes_done.min(bytes) * WIDTH)
        .checked_div(bytes)
        .unwrap_or(0);
    let bar: String = (0..WIDTH)
        .map(|i| {
            if i < filled {
                '='
            } else if i == filled {
                '>'
            } else {
                ' '
            }
        })
        .collect();
    format!(
        "[{bar}] {:.1}/{:.1} MB  {layers_done}/{layers} layers",
        bytes_done as f64 / 1e6,
        bytes as f64 / 1e6
    )
}

pub async fn ls(m: &ManagerProxy<'_>, as_json: bool) -> anyhow::Result<()> {
    let list = m.list_images().await?;
    if as_json {
        let v: Vec<_> = list
            .iter()
            .map(|(n, id, size, at)| json!({"name": n, "id": id, "size": size, "importedAt": at}))
            .collect();
        println!("{}", json!(v));
        return Ok(());
    }
    println!("{:<40} {:<20} {:>10}", "NAME", "ID", "SIZE");
    for (name, id, size, _) in list {
        let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
        println!("{name:<40} {short:<20} {:>8.1}MB", size as f64 / 1e6);
    }
    Ok(())
}

pub async fn rm(m: &ManagerProxy<'_>, name: String) -> anyhow::Result<()> {
    m.remove_image(name).await.map_err(wire)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::progress_line;

    #[test]
    fn the_bar_fills_with_the_bytes() {
        assert_eq!(
            progress_line(1, 2, 5_000_000, 10_000_000),
            "[===============>              ] 5.0/10.0 MB  1/2 layers"
        );
        assert!(progress_line(0, 0, 0, 0).contains("0/0 layers"));
    }
}
