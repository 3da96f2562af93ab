//! What a registered definition may ask that one host can only refuse when a task of it is run:
//! ECS registers these definitions (another host might serve them), so berth does too, and a
//! RunTask (or a service's creation) names the field instead of starting a task without what
//! it asked for.
//!
//! Pure: a definition and what the host has configured in, the refusals out.

use super::TaskDefinition;

/// What this host can give a task beyond its own resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostSources {
    /// `secrets_dir` is set: `secrets` are read from files beneath it.
    pub secrets: bool,
}

/// Each field of `def` this host cannot honour, as "FIELD: why and what to do".
pub fn refusals(def: &TaskDefinition, host: HostSources) -> Vec<String> {
    let mut out = Vec::new();
    for (i, v) in def.volumes.iter().enumerate() {
        if v.configured_at_launch {
            out.push(format!(
                "volumes[{i}] ({}).configuredAtLaunch: the volume is given at RunTask as an EBS volume, which one host does not have; use a host or task volume",
                v.name
            ));
        }
    }
    for (i, c) in def.containers.iter().enumerate() {
        let at = format!("containerDefinitions[{i}] ({})", c.name);
        if !c.secrets.is_empty() && !host.secrets {
            out.push(format!(
                "{at}.secrets: this host has no secret store; set secrets_dir in berthd.toml to a root-only directory holding each valueFrom as a file, or use environmentFiles"
            ));
        }
        if host.secrets {
            for (j, s) in c.secrets.iter().enumerate() {
                if let Err(why) = super::secrets::secret_file(&s.value_from) {
                    out.push(format!("{at}.secrets[{j}].valueFrom: {why}"));
                }
            }
        }
        if let Some(param) = &c.repository_credentials {
            if !host.secrets {
                out.push(format!(
                    "{at}.repositoryCredentials: this host has no secret store; set secrets_dir in berthd.toml to a root-only directory holding the credentialsParameter as a file of JSON {{\"username\", \"password\"}}, or put the registry's login in registry_auth_file"
                ));
            } else if let Err(why) = super::secrets::secret_file(param) {
                out.push(format!(
                    "{at}.repositoryCredentials.credentialsParameter: {why}"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(container_extra: &str, volumes: &str) -> TaskDefinition {
        let text = format!(
            r#"{{"family":"f","volumes":[{volumes}],"containerDefinitions":[{{"name":"app","image":"busybox","memory":64{container_extra}}}]}}"#
        );
        crate::spec::parse(&text)
            .unwrap_or_else(|e| panic!("{e}"))
            .definition
    }

    #[test]
    fn a_plain_definition_runs() {
        assert!(refusals(&def("", ""), HostSources::default()).is_empty());
    }

    #[test]
    fn an_ebs_volume_given_at_launch_is_refused_naming_the_field() {
        let d = def("", r#"{"name":"data","configuredAtLaunch":true}"#);
        let r = refusals(&d, HostSources { secrets: true });
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("volumes[0] (data).configuredAtLaunch:"),
            "{r:?}"
        );
    }

    #[test]
    fn secrets_need_a_host_source_and_a_plain_value_from() {
        let d = def(
            r#","secrets":[{"name":"DB","valueFrom":"arn:aws:ssm:eu-west-1:1:parameter/db"}]"#,
            "",
        );
        let r = refusals(&d, HostSources::default());
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("containerDefinitions[0] (app).secrets:"),
            "{r:?}"
        );
        assert!(r[0].contains("secrets_dir"), "{r:?}");
        assert!(refusals(&d, HostSources { secrets: true }).is_empty());
        let climbing = def(
            r#","secrets":[{"name":"DB","valueFrom":"../../etc/shadow"}]"#,
            "",
        );
        let r = refusals(&climbing, HostSources { secrets: true });
        assert!(
            r[0].starts_with("containerDefinitions[0] (app).secrets[0].valueFrom:"),
            "{r:?}"
        );
    }

    #[test]
    fn repository_credentials_need_a_secret_store_and_a_plain_name() {
        let d = def(
            r#","repositoryCredentials":{"credentialsParameter":"arn:aws:secretsmanager:r:1:secret:reg"}"#,
            "",
        );
        assert_eq!(
            refusals(&d, HostSources { secrets: true }),
            Vec::<String>::new()
        );
        let r = refusals(&d, HostSources { secrets: false });
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("containerDefinitions[0] (app).repositoryCredentials:")
                && r[0].contains("secrets_dir"),
            "{r:?}"
        );
        let climbing = def(
            r#","repositoryCredentials":{"credentialsParameter":"../../root/.docker/config.json"}"#,
            "",
        );
        let r = refusals(&climbing, HostSources { secrets: true });
        assert!(
            r[0].starts_with(
                "containerDefinitions[0] (app).repositoryCredentials.credentialsParameter:"
            ),
            "{r:?}"
        );
    }
}
