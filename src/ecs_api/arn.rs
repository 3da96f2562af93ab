//! ECS's ARNs for berth's one cluster, under the account and region the operator configured,
//! and the names or ids a request may give in their place.

use crate::store::Tagged;

/// How berth's objects are named in ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    pub region: String,
    pub account: String,
    /// The host's cluster name (ECS's default is `default`).
    pub cluster: String,
    /// The host's container-instance id (`instance_id`).
    pub instance: String,
}

/// The container-instance id of a host: 32 hex digits, as ECS's are, derived from the
/// host's machine id so it is stable across restarts. The machine id itself is not shown:
/// systemd asks that it be hashed per application before it leaves the host.
pub fn instance_id(machine_id: &str) -> String {
    let mac = super::sigv4::hmac(machine_id.trim().as_bytes(), b"berth container instance");
    super::sigv4::hex(&mac[..16])
}

impl Arns {
    fn prefix(&self) -> String {
        format!("arn:aws:ecs:{}:{}", self.region, self.account)
    }

    pub fn cluster(&self) -> String {
        format!("{}:cluster/{}", self.prefix(), self.cluster)
    }

    pub fn task_definition(&self, reference: &str) -> String {
        format!("{}:task-definition/{reference}", self.prefix())
    }

    pub fn task(&self, id: &str) -> String {
        format!("{}:task/{}/{id}", self.prefix(), self.cluster)
    }

    pub fn service(&self, name: &str) -> String {
        format!("{}:service/{}/{name}", self.prefix(), self.cluster)
    }

    /// This host's container-instance ARN.
    pub fn instance(&self) -> String {
        format!(
            "{}:container-instance/{}/{}",
            self.prefix(),
            self.cluster,
            self.instance
        )
    }

    /// Whether `given` (an id or an ARN) names this host's container instance.
    pub fn is_instance(&self, given: &str) -> bool {
        last_segment(given) == self.instance
    }

    /// Whether `given` (a name or an ARN) names this host's cluster; absent means ECS's
    /// `default`, which is this cluster too.
    pub fn is_cluster(&self, given: Option<&str>) -> bool {
        match given {
            None => true,
            Some(g) => g == self.cluster || g == "default" || g == self.cluster(),
        }
    }
}

impl Arns {
    /// What a resource ARN names, when it is one of this cluster's.
    pub fn tagged(&self, arn: &str) -> Option<Tagged> {
        let rest = arn.strip_prefix(&format!("{}:", self.prefix()))?;
        let (kind, path) = rest.split_once('/')?;
        let in_cluster = |p: &str| {
            p.split_once('/')
                .filter(|(c, id)| *c == self.cluster && !id.is_empty() && !id.contains('/'))
                .map(|(_, id)| id.to_string())
        };
        match kind {
            "cluster" => (path == self.cluster).then_some(Tagged::Cluster),
            "container-instance" => {
                (in_cluster(path)? == self.instance).then_some(Tagged::Instance)
            }
            "task-definition" => path
                .contains(':')
                .then(|| Tagged::Definition(path.to_string())),
            "task" => in_cluster(path).map(Tagged::Task),
            "service" => in_cluster(path).map(Tagged::Service),
            _ => None,
        }
    }
}

/// The last path segment of an ARN, or the name itself: a task's id, a service's name.
pub fn last_segment(given: &str) -> &str {
    if given.starts_with("arn:") {
        given.rsplit('/').next().unwrap_or(given)
    } else {
        given
    }
}

/// `family[:revision]` from a task definition's ARN or reference.
pub fn definition_reference(given: &str) -> &str {
    match given.strip_prefix("arn:") {
        Some(_) => given
            .split_once(":task-definition/")
            .map_or(given, |(_, r)| r),
        None => given,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_read_back_to_what_they_name() {
        let a = Arns {
            region: "us-east-1".into(),
            account: "000000000000".into(),
            cluster: "default".into(),
            instance: instance_id("0123456789abcdef0123456789abcdef"),
        };
        assert_eq!(a.instance.len(), 32);
        assert_ne!(a.instance, instance_id("fedcba9876543210fedcba9876543210"));
        assert!(a.is_instance(&a.instance()) && !a.is_instance("abc"));
        let t = a.task("abc");
        assert_eq!(t, "arn:aws:ecs:us-east-1:000000000000:task/default/abc");
        assert_eq!(last_segment(&t), "abc");
        assert_eq!(last_segment("abc"), "abc");
        let d = a.task_definition("web:3");
        assert_eq!(definition_reference(&d), "web:3");
        assert_eq!(definition_reference("web"), "web");
        assert!(
            a.is_cluster(None) && a.is_cluster(Some("default")) && a.is_cluster(Some(&a.cluster()))
        );
        assert!(!a.is_cluster(Some("prod")));
        assert_eq!(a.tagged(&t), Some(Tagged::Task("abc".into())));
        assert_eq!(a.tagged(&d), Some(Tagged::Definition("web:3".into())));
        assert_eq!(a.tagged(&a.service("s")), Some(Tagged::Service("s".into())));
        assert_eq!(a.tagged(&a.cluster()), Some(Tagged::Cluster));
        assert_eq!(a.tagged(&a.instance()), Some(Tagged::Instance));
        for other in [
            "arn:aws:ecs:us-east-1:000000000000:task/prod/abc",
            "arn:aws:ecs:eu-west-1:000000000000:task/default/abc",
            "arn:aws:ecs:us-east-1:000000000000:task/default/a/b",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web",
            "arn:aws:ecs:us-east-1:000000000000:capacity-provider/x",
            "abc",
        ] {
            assert_eq!(a.tagged(other), None, "{other}");
        }
    }
}
