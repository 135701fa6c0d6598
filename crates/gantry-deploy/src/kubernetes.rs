//! `--target kubernetes`: the traffic split belongs to an engine the cluster
//! already runs, gantry stays the judge.
//!
//! - **gateway-api**: gantry runs each version as a Deployment and a Service
//!   and writes only the weights of the user's `HTTPRoute` (server-side
//!   apply, field manager `gantry`).
//! - **kserve**: one `InferenceService` whose `canaryTrafficPercent` gantry
//!   steps; promotion removes the field, rollback sets `0`.
//! - **argo-rollouts**: gantry sets the model on the user's `Rollout` and
//!   follows it (`argo` module); Argo steps the traffic.
//!
//! Every call goes through [`Cluster`]: raw requests on kube-rs's client
//! (kubeconfig or the in-cluster service account, rustls), retried by the
//! shared retry policy, with refusals turned into messages that name the
//! verb, the resource and the namespace.

pub mod argo;
mod cluster;
pub mod dry_run;
mod engines;
pub mod render;

pub use cluster::{Cluster, ClusterSource, Kind};
pub use engines::{Engine, KubeOptions, KubeTarget, ModelSource};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "gantry";

/// Labels and annotations gantry sets.
pub mod keys {
    /// The model's name (on Deployments, Services, pods).
    pub const NAME: &str = "app.kubernetes.io/name";
    /// The model version.
    pub const VERSION: &str = "app.kubernetes.io/version";
    /// `gantry` on what gantry created.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The manifest digest a version serves.
    pub const DIGEST: &str = "gantry.dev/digest";
    /// The model reference (`NAME@sha256:…`) on a Rollout's pod template.
    pub const MODEL: &str = "gantry.dev/model";
    /// The rollout holding the weights, and until when (milliseconds since the epoch).
    pub const LEASE_HOLDER: &str = "gantry.dev/lease-holder";
    /// See [`LEASE_HOLDER`].
    pub const LEASE_EXPIRES: &str = "gantry.dev/lease-expires-ms";
    /// The stable version of the route or InferenceService.
    pub const STABLE: &str = "gantry.dev/stable-version";
}

/// A Kubernetes object name for `model`'s `version`: an RFC 1035 label
/// (lowercase letters, digits and `-`, at most 63), with a short hash of
/// the original when characters had to be replaced or the name cut.
pub fn object_name(model: &str, version: &str) -> String {
    let wanted = format!("{model}-{version}");
    let mut name: String = wanted
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let name = name.trim_matches('-').to_owned();
    let lossless = name == wanted;
    let mut name = if name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name
    } else {
        format!("m-{name}")
    };
    if !lossless || name.len() > 63 {
        let hash = xxhash_rust::xxh3::xxh3_64(wanted.as_bytes());
        name.truncate(63 - 9);
        let name = name.trim_end_matches('-');
        return format!("{name}-{:08x}", hash as u32);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::object_name;

    #[test]
    fn object_names_are_dns_labels_and_distinct() {
        assert_eq!(object_name("tiny", "v2"), "tiny-v2");
        let dotted = object_name("tiny", "1.0.0");
        assert!(dotted.starts_with("tiny-1-0-0-"), "{dotted}");
        assert_ne!(object_name("tiny", "1.0.0"), object_name("tiny", "1-0-0"));
        let long = object_name(&"m".repeat(80), "1");
        assert!(long.len() <= 63, "{long}");
        assert!(object_name("Tiny_LM", "9").starts_with("tiny-lm-9-"));
        assert!(object_name("1x", "a").starts_with("m-1x-a"));
    }
}
