//! ECS's ARNs for berth's one cluster, under the account and region the operator configured,
//! and the names or ids a request may give in their place.

/// How berth's objects are named in ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    pub region: String,
    pub account: String,
    /// The host's cluster name (ECS's default is `default`).
    pub cluster: String,
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

    pub fn container_instance(&self, id: &str) -> String {
        format!("{}:container-instance/{}/{id}", self.prefix(), self.cluster)
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
        Some(_) => given.split_once(":task-definition/").map_or(given, |(_, r)| r),
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
        };
        let t = a.task("abc");
        assert_eq!(t, "arn:aws:ecs:us-east-1:000000000000:task/default/abc");
        assert_eq!(last_segment(&t), "abc");
        assert_eq!(last_segment("abc"), "abc");
        let d = a.task_definition("web:3");
        assert_eq!(definition_reference(&d), "web:3");
        assert_eq!(definition_reference("web"), "web");
        assert!(a.is_cluster(None) && a.is_cluster(Some("default")) && a.is_cluster(Some(&a.cluster())));
        assert!(!a.is_cluster(Some("prod")));
    }
}
