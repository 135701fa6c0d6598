/*!
Shared types that flow between gantry's steps and crates.

Every capability crate speaks in these types, so that the CLI can render them
and the CI layer can publish them without knowing which capability produced
them:

- [`Verdict`] and [`ExitCode`]: the three-way contract `0` pass, `1` the
  check said no, `2` the tool could not do its job.
- [`Finding`]: one located observation (file, line, severity, stable code).
- [`Digest`]: a `sha256:<hex>` content address, and [`canonical_json_digest`]
  for manifests whose identity is the digest of their canonical JSON.
- [`Secret`]: a string that never prints itself, and [`Redactor`], the one
  layer every byte gantry writes passes through.
- [`ModelManifest`]: a registered model version; its identity is [`ModelManifest::digest`],
  and [`read_safetensors_header`], which summarizes a safetensors file as a manifest records it.
- [`RetryPolicy`] and [`retry::retry`]: the one retry loop of every HTTP call.

```
use gantry_core::{Digest, Verdict};

let digest = Digest::of_bytes(b"hello");
assert_eq!(digest.to_string().len(), "sha256:".len() + 64);
assert_eq!(Verdict::Fail.exit_code().as_i32(), 1);
```
*/

pub mod chart;
mod digest;
mod error;
mod finding;
mod gguf;
mod manifest;
pub mod redact;
pub mod retry;
mod safetensors;
mod secret;
mod verdict;

pub use crate::digest::{Digest, canonical_json, canonical_json_digest};
pub use crate::error::{Error, Result};
pub use crate::finding::{Finding, Location, Severity, findings_schema};
pub use crate::gguf::read_header as read_gguf_header;
pub use crate::manifest::{
    DataLink, DerivedFrom, DocumentLink, GateLink, GgufSummary, GitLineage, Lineage,
    MANIFEST_SCHEMA_VERSION, ManifestFile, ModelManifest, PickleSummary, RunLink,
    SafetensorsSummary, manifest_schema,
};
pub use crate::redact::{Admission, Redactor, credentials_in_urls};
pub use crate::retry::{RetryPolicy, transport_reason};
pub use crate::safetensors::read_header as read_safetensors_header;
pub use crate::secret::Secret;
pub use crate::verdict::{ExitCode, Verdict};
