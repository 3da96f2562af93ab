//! `berthctl image import | ls | rm`. An import sends berthd a tar stream over a file
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
