/*!
A model directory as gantry reads it.

[`ModelSource::read`] walks a directory (symlinks must stay inside it, hidden
entries are skipped), gives each file its ModelPack media type, summarizes
safetensors headers without reading the weights and scans pickle-based
checkpoints for imports that run code ([`pickle`]). [`ModelSource::hash`] and
[`hash_file`] hash the files in parallel, largest first, failing when a file
changes underneath.

register-model stores what this reads; train-on-runner hashes its outputs
with it. Neither needs the other's code for that.
*/

mod error;
pub mod pickle;
mod source;

pub use crate::error::{Error, Result};
pub use crate::source::{
    ModelSource, SourceFile, hash_file, hash_stream, media_type, parallel_largest_first,
    parallel_largest_first_on,
};
