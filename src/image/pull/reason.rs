//! A registry's failure as an operator reads it (as `docker pull` words it): the registry's own
//! error codes and messages, an unauthorized login with where berth's logins come from, a
//! timeout or a refused connection with its cause.

use oci_client::errors::OciDistributionError;

use crate::errors::chain;

/// The reason `e` gives, every cause named once.
pub fn of(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|err| {
                let code = serde_json::to_value(&err.code)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s.to_lowercase().replace('_', " ")))
                    .unwrap_or_else(|| "error".into());
                if err.message.is_empty() || err.message == code {
                    code
                } else {
                    format!("{code}: {}", err.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        OciDistributionError::UnauthorizedError { url } => format!(
            "unauthorized: the registry refused the login for {url} (berth's logins: registry_auth_file, or the task's repositoryCredentials)"
        ),
        OciDistributionError::AuthenticationFailure(why) => {
            format!("authentication failed: {why}")
        }
        OciDistributionError::ImageManifestNotFoundError(what) => {
            format!("manifest unknown: {what}")
        }
        OciDistributionError::ServerError { code, url, message } => {
            format!("HTTP {code} from {url}: {message}")
        }
        OciDistributionError::RequestError(r) if r.is_timeout() => {
            format!("the registry did not answer in time: {}", chain(r))
        }
        OciDistributionError::RequestError(r) if r.is_connect() => {
            format!("cannot connect to the registry: {}", chain(r))
        }
        other => chain(other),
    }
}

/// Whether `e` may pass if asked again: a timeout, a connection refused or cut, a 5xx.
pub fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_timeout() || r.is_connect() || r.is_body() || r.is_request()
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500,
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}
