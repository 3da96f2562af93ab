//! Hands berth's nft JSON documents to nft (through the `nftables` crate, which runs
//! `nft -j -f -`) and reads berth's publish chain back. Only table `berth` is ever named.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::rules::{PUBLISH, TABLE};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft ({program}) could not run: {detail}; install the nftables package (berth forwards ports with nftables, never iptables)")]
    Missing { program: PathBuf, detail: String },
    #[error("nft refused berth's {what}: {detail}")]
    Refused { what: &'static str, detail: String },
    #[error("nft listed berth's table as something other than JSON: {0}")]
    Listing(#[source] serde_json::Error),
}

#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
}

impl Nft {
    pub fn new(program: &Path) -> Nft {
        Nft {
            program: program.to_owned(),
        }
    }

    fn error(&self, what: &'static str, e: nftables::helper::NftablesError) -> NftError {
        use nftables::helper::NftablesError as E;
        match e {
            E::NftExecution { inner, .. } => NftError::Missing {
                program: self.program.clone(),
                detail: inner.to_string(),
            },
            other => NftError::Refused {
                what,
                detail: other.to_string().replace('\n', " "),
            },
        }
    }

    /// Applies one document as one transaction: all of it or none.
    pub fn apply(&self, what: &'static str, doc: &Value) -> Result<(), NftError> {
        let no_args: [&str; 0] = [];
        nftables::helper::apply_ruleset_raw(&doc.to_string(), Some(&self.program), no_args)
            .map(|_| ())
            .map_err(|e| self.error(what, e))
    }

    /// The publish chain with rule handles; an empty listing when berth's table is absent.
    pub fn list_published(&self) -> Result<Value, NftError> {
        self.list(&["-a", "list", "chain", "ip", TABLE, PUBLISH])
    }

    /// Berth's whole table, with counters; an empty listing when it is absent.
    pub fn list_table(&self) -> Result<Value, NftError> {
        self.list(&["list", "table", "ip", TABLE])
    }

    fn list(&self, args: &[&str]) -> Result<Value, NftError> {
        match nftables::helper::get_current_ruleset_raw(Some(&self.program), args) {
            Ok(out) => serde_json::from_str(&out).map_err(NftError::Listing),
            Err(nftables::helper::NftablesError::NftFailed { stderr, .. })
                if stderr.contains("No such file") =>
            {
                Ok(serde_json::json!({"nftables": []}))
            }
            Err(e) => Err(self.error("listing", e)),
        }
    }
}
