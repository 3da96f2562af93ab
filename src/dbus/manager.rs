//! `org.berth.Agent1.Manager`: task definitions and the host's capacity.

use zbus::message::Header;
use zbus::{interface, Connection};

use super::access::require_admin;
use super::BerthError;
use crate::engine::Engine;

pub struct Manager {
    engine: Engine,
}

impl Manager {
    pub fn new(engine: Engine) -> Manager {
        Manager { engine }
    }
}

#[interface(
    name = "org.berth.Agent1.Manager",
    proxy(
        default_service = "org.berth.Agent1",
        default_path = "/org/berth/Agent1"
    )
)]
impl Manager {
    /// Registers an ECS task definition (JSON). Returns `family:revision` and the fields kept
    /// but ignored on one host.
    #[zbus(out_args("task_definition", "ignored"))]
    async fn register_task_definition(
        &self,
        json: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, Vec<String>), BerthError> {
        require_admin(conn, &hdr).await?;
        let reg = self.engine.register_definition(&json)?;
        tracing::info!(task_definition = %reg.reference(), "registered");
        Ok((reg.reference(), reg.ignored))
    }

    /// Active `family:revision` references whose family starts with `family_prefix`.
    async fn list_task_definitions(&self, family_prefix: String) -> Vec<String> {
        self.engine.list_definitions(&family_prefix)
    }

    /// The task definition as registered (JSON), with `family`, `revision`, `status`.
    async fn describe_task_definition(&self, reference: String) -> Result<String, BerthError> {
        let reg = self.engine.describe_definition(&reference)?;
        let mut json = reg.json.clone();
        if let Some(obj) = json.as_object_mut() {
            obj.insert("revision".into(), reg.revision.into());
            obj.insert(
                "status".into(),
                if reg.active { "ACTIVE" } else { "INACTIVE" }.into(),
            );
            obj.insert("ignoredFields".into(), reg.ignored.clone().into());
        }
        Ok(json.to_string())
    }

    /// Marks `family:revision` inactive.
    async fn deregister_task_definition(
        &self,
        reference: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BerthError> {
        require_admin(conn, &hdr).await?;
        Ok(self.engine.deregister_definition(&reference)?)
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// CPU units the host registers (1024 per online CPU).
    #[zbus(property)]
    fn registered_cpu(&self) -> u64 {
        self.engine.capacity().registered.cpu_units
    }

    /// MiB the host registers (MemTotal less the configured reserve).
    #[zbus(property)]
    fn registered_memory(&self) -> u64 {
        self.engine.capacity().registered.memory_mib
    }

    #[zbus(property)]
    fn remaining_cpu(&self) -> u64 {
        self.engine.capacity().remaining.cpu_units
    }

    #[zbus(property)]
    fn remaining_memory(&self) -> u64 {
        self.engine.capacity().remaining.memory_mib
    }
}
