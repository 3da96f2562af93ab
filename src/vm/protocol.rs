//! The control channel between berth on the host and its agent in a microVM: frames of a
//! big-endian u32 length and a JSON message, over any byte stream (a virtio-serial port in the
//! guest, its Unix socket on the host; a socketpair in tests). Both sides say their protocol
//! version first and refuse a mismatch in words, so a stale cached initramfs is caught at once.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Bumped on any change to the messages below.
pub const VERSION: u32 = 2;
/// Larger frames are refused: nothing berth sends comes near it, and a corrupt length must not
/// make either side allocate gigabytes.
pub const MAX_FRAME: u32 = 16 << 20;
/// The host reads the agent's frames under a smaller bound: the largest it sends is a chunk of
/// output (256 KiB of text, escaped), and the guest is not trusted with the host's memory.
pub const MAX_AGENT_FRAME: u32 = 4 << 20;

/// What the host says to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    Hello {
        version: u32,
    },
    /// Create and start these containers, then report each one's exit.
    Run {
        containers: Vec<VmContainer>,
    },
    /// SIGTERM to every container, SIGKILL after its `stop_timeout_secs`.
    Stop,
    /// Are you there? The agent answers with a [`AgentMessage::Pong`] of the same `seq`,
    /// carrying its containers' usage: the heartbeat and the metrics in one exchange.
    Ping {
        seq: u64,
    },
    /// Run container `name`'s health check inside it: `command` (an argv) as `uid`:`gid` in
    /// `cwd`, killed past `timeout_secs`. Answered by [`AgentMessage::Checked`].
    Check {
        name: String,
        command: Vec<String>,
        uid: u32,
        gid: u32,
        cwd: String,
        timeout_secs: u64,
    },
    /// Sync the disks and power the VM off.
    PowerOff,
}

/// One container of a microVM task: its OCI `config.json` (made on the host by the same code
/// as container mode's, with `root.path` relative to the bundle) and the serials of the
/// read-only layer disks its root filesystem is made of, lowest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmContainer {
    pub name: String,
    pub config: serde_json::Value,
    pub layers: Vec<String>,
    /// SIGTERM to SIGKILL on a stop (the container's `stopTimeout`).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u64,
}

fn default_stop_timeout() -> u64 {
    30
}

/// What the agent says to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello {
        version: u32,
        /// The guest kernel's release (`uname -r`).
        kernel: String,
        /// Kernel modules the agent loaded, in order.
        modules: Vec<String>,
    },
    /// The agent will not talk: a version mismatch, said before it closes.
    Refused { reason: String },
    /// A container's init process runs.
    Started { name: String, pid: u32 },
    /// A container could not be created or started.
    Failed { name: String, reason: String },
    /// A container's init process ended (128 + signal when killed); `oom` when the kernel's
    /// OOM killer ended it (its cgroup's `memory.events`).
    Exited { name: String, code: i32, oom: bool },
    /// What a container wrote to its stdout or stderr since the last report. Bytes that are
    /// not UTF-8 arrive replaced (U+FFFD); a character split between two reads is kept whole.
    Output {
        name: String,
        stderr: bool,
        data: String,
    },
    /// A health check of container `name` ended; `failure` says why it did not pass.
    Checked {
        name: String,
        failure: Option<String>,
    },
    /// The answer to a ping, with each running container's usage.
    Pong { seq: u64, usage: Vec<Usage> },
    /// The agent is powering the VM off.
    PoweringOff,
}

/// A running container's usage, read from its cgroup in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub name: String,
    /// `cpu.stat` `usage_usec`.
    pub cpu_usec: u64,
    /// `memory.current`.
    pub memory_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("control channel closed by the other side")]
    Closed,
    #[error("control channel: frame of {0} bytes is over the limit")]
    TooLarge(u32),
    #[error("control channel: unreadable message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("the microVM agent refused the host: {0}")]
    Refused(String),
    #[error(
        "the microVM agent speaks protocol {agent}, this berth speaks {host}: its initramfs is \
         stale (berth rebuilds it when the agent binary changes; remove the cached initramfs)"
    )]
    Version { agent: u32, host: u32 },
    #[error("the microVM agent answered {0} where a hello was due")]
    Unexpected(String),
}

pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), ProtocolError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, ProtocolError> {
    read_frame_limited(r, MAX_FRAME)
}

/// A frame of at most `limit` bytes; a longer one is refused before anything is allocated.
pub fn read_frame_limited<R: Read, T: DeserializeOwned>(
    r: &mut R,
    limit: u32,
) -> Result<T, ProtocolError> {
    let mut len = [0u8; 4];
    if let Err(e) = r.read_exact(&mut len) {
        return Err(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ProtocolError::Closed,
            _ => ProtocolError::Io(e),
        });
    }
    let len = u32::from_be_bytes(len);
    if len > limit {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ProtocolError::Closed,
        _ => ProtocolError::Io(e),
    })?;
    Ok(serde_json::from_slice(&body)?)
}

/// The host's side of the greeting: says its version, returns the agent's hello.
pub fn greet<S: Read + Write>(s: &mut S) -> Result<AgentMessage, ProtocolError> {
    write_frame(s, &HostMessage::Hello { version: VERSION })?;
    hello_of(read_frame::<_, AgentMessage>(s)?)
}

/// The agent's first message, taken when it is a hello of this protocol version.
pub fn hello_of(msg: AgentMessage) -> Result<AgentMessage, ProtocolError> {
    match msg {
        hello @ AgentMessage::Hello { version, .. } if version == VERSION => Ok(hello),
        AgentMessage::Hello { version, .. } => Err(ProtocolError::Version {
            agent: version,
            host: VERSION,
        }),
        AgentMessage::Refused { reason } => Err(ProtocolError::Refused(reason)),
        other => Err(ProtocolError::Unexpected(format!("{other:?}"))),
    }
}

/// The agent's answer to a host's hello: its own hello, or a refusal it sends before the error.
pub fn answer<S: Write>(
    s: &mut S,
    host_version: u32,
    hello: AgentMessage,
) -> Result<(), ProtocolError> {
    if host_version != VERSION {
        let reason = format!("agent speaks protocol {VERSION}, host speaks {host_version}");
        write_frame(
            s,
            &AgentMessage::Refused {
                reason: reason.clone(),
            },
        )?;
        return Err(ProtocolError::Refused(reason));
    }
    write_frame(s, &hello)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn hello() -> AgentMessage {
        AgentMessage::Hello {
            version: VERSION,
            kernel: "6.1.0-57-cloud-amd64".into(),
            modules: vec!["virtio_console".into()],
        }
    }

    #[test]
    fn host_and_agent_greet_over_a_socketpair() {
        let (mut host, mut agent) = UnixStream::pair().unwrap();
        let agent_side = std::thread::spawn(move || {
            let HostMessage::Hello { version } = read_frame(&mut agent).unwrap() else {
                panic!("no hello");
            };
            answer(&mut agent, version, hello()).unwrap();
            read_frame::<_, HostMessage>(&mut agent).unwrap()
        });
        assert_eq!(greet(&mut host).unwrap(), hello());
        write_frame(&mut host, &HostMessage::PowerOff).unwrap();
        assert_eq!(agent_side.join().unwrap(), HostMessage::PowerOff);
    }

    #[test]
    fn an_agent_of_another_version_is_refused_in_words() {
        let (mut host, mut agent) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let _: HostMessage = read_frame(&mut agent).unwrap();
            let old = AgentMessage::Hello {
                version: VERSION + 1,
                kernel: "k".into(),
                modules: vec![],
            };
            write_frame(&mut agent, &old).unwrap();
        });
        let err = greet(&mut host).unwrap_err().to_string();
        assert!(
            err.contains(&format!("speaks protocol {}", VERSION + 1)),
            "{err}"
        );
        assert!(err.contains("stale"), "{err}");
    }

    #[test]
    fn the_agent_refuses_a_host_of_another_version_before_closing() {
        let (mut host, mut agent) = UnixStream::pair().unwrap();
        let refused = answer(&mut agent, VERSION + 7, hello()).unwrap_err();
        assert!(matches!(refused, ProtocolError::Refused(_)));
        drop(agent);
        let got: AgentMessage = read_frame(&mut host).unwrap();
        assert_eq!(
            got,
            AgentMessage::Refused {
                reason: format!(
                    "agent speaks protocol {VERSION}, host speaks {}",
                    VERSION + 7
                )
            }
        );
        assert!(matches!(
            read_frame::<_, AgentMessage>(&mut host),
            Err(ProtocolError::Closed)
        ));
    }

    #[test]
    fn an_oversized_length_is_refused_without_allocating() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&(MAX_FRAME + 1).to_be_bytes()).unwrap();
        assert!(matches!(
            read_frame::<_, HostMessage>(&mut b),
            Err(ProtocolError::TooLarge(n)) if n == MAX_FRAME + 1
        ));
    }
}
