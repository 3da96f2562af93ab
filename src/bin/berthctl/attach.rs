//! `berthctl run --wait`'s attached output: every container's log as it is written, as
//! `docker run` shows it. With more than one container each line carries the container's
//! name (as `docker compose up` does), so interleaved output stays readable.

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use berth::dbus::client::TaskObjectProxy;

use crate::wire;

/// How often the logs are read while the task runs. The stop itself is not waited for here
/// (the caller's signal wait ends the attach), so this only paces the output.
const POLL: Duration = Duration::from_millis(250);

/// Turns one container's chunks of output into what is printed: as they come when unprefixed,
/// else whole lines prefixed with `name | ` (a partial line waits for its end or the finish).
#[derive(Debug)]
pub struct Prefixer {
    prefix: Option<String>,
    partial: Vec<u8>,
}

impl Prefixer {
    pub fn new(prefix: Option<String>) -> Self {
        Self {
            prefix,
            partial: Vec::new(),
        }
    }

    /// What to print of this chunk now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(prefix) = &self.prefix else {
            return chunk.to_vec();
        };
        self.partial.extend_from_slice(chunk);
        let Some(last) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last + 1);
        let whole = std::mem::replace(&mut self.partial, rest);
        let mut out = Vec::with_capacity(whole.len() + prefix.len() * 4);
        for line in whole.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(line);
        }
        out
    }

    /// The last line that had no newline, once the container has stopped.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        let mut out = self.prefix.clone().unwrap_or_default().into_bytes();
        out.append(&mut self.partial);
        out.push(b'\n');
        out
    }
}

/// The prefixes of a task's containers: none for a single container, else each name padded
/// to the longest, as `docker compose` aligns them.
pub fn prefixes(names: &[String]) -> Vec<Option<String>> {
    if names.len() < 2 {
        return names.iter().map(|_| None).collect();
    }
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    names
        .iter()
        .map(|n| Some(format!("{n:<width$} | ")))
        .collect()
}

struct Followed {
    name: String,
    offset: u64,
    lines: Prefixer,
}

/// Every container's log of one task, read from where the last read ended.
pub struct Attach<'a> {
    task: TaskObjectProxy<'a>,
    containers: Vec<Followed>,
}

impl<'a> Attach<'a> {
    pub fn new(task: TaskObjectProxy<'a>, names: Vec<String>) -> Self {
        let containers = prefixes(&names)
            .into_iter()
            .zip(names)
            .map(|(prefix, name)| Followed {
                name,
                offset: 0,
                lines: Prefixer::new(prefix),
            })
            .collect();
        Self { task, containers }
    }

    /// Reads what each container wrote since the last read and prints it; true when any
    /// container had output.
    async fn read_once(&mut self) -> anyhow::Result<bool> {
        let mut any = false;
        for c in &mut self.containers {
            let (data, next) = self
                .task
                .read_log(c.name.clone(), c.offset)
                .await
                .map_err(wire)?;
            c.offset = next;
            if data.is_empty() {
                continue;
            }
            any = true;
            let out = c.lines.feed(&data);
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&out)?;
            stdout.flush()?;
        }
        Ok(any)
    }

    /// Prints output as it comes; never returns on its own (the caller ends it at the stop).
    pub async fn follow(&mut self) -> anyhow::Result<Infallible> {
        loop {
            if !self.read_once().await? {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// After the stop: what was written since the last read, and every unfinished line.
    pub async fn drain(&mut self) -> anyhow::Result<()> {
        while self.read_once().await? {}
        let mut stdout = std::io::stdout().lock();
        for c in &mut self.containers {
            stdout.write_all(&c.lines.finish())?;
        }
        stdout.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_container_is_printed_as_it_comes() {
        let mut p = Prefixer::new(None);
        assert_eq!(p.feed(b"hel"), b"hel");
        assert_eq!(p.feed(b"lo\n"), b"lo\n");
        assert!(p.finish().is_empty());
    }

    #[test]
    fn several_containers_get_whole_lines_with_their_names() {
        let names = vec!["web".to_string(), "sidecar".to_string()];
        let mut ps: Vec<Prefixer> = prefixes(&names).into_iter().map(Prefixer::new).collect();
        assert_eq!(ps[0].feed(b"one\ntw"), b"web     | one\n");
        assert_eq!(
            ps[0].feed(b"o\nthree\n"),
            b"web     | two\nweb     | three\n"
        );
        assert_eq!(ps[1].feed(b"no newline"), b"");
        assert_eq!(ps[1].finish(), b"sidecar | no newline\n");
        assert!(ps[1].finish().is_empty());
    }

    #[test]
    fn a_single_container_has_no_prefix() {
        assert_eq!(prefixes(&["only".to_string()]), vec![None]);
    }
}
