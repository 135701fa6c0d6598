//! A merge that is itself parallel: partition K of P takes hash bucket K of
//! P from every shard file — content hashes by their own value, band keys
//! by (band, key) — so duplicates and near-duplicate candidates meet in one
//! partition and no job holds more than its share. A final, small step
//! combines the partitions' groups and links with the shards' headers into
//! the report, lock and summary, identical to an unsharded run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::engine::finish_with;
use super::record::{ContentHash, Occurrence, Occurrences, Position, Shard, occurrences};
use super::report::{Duplicates, near_example_pairs};
use super::shard::{combine, expand, open, read_shards};
use super::{ValidateOptions, Validation};
use crate::error::{Error, Result};
use crate::neardup::{BANDS, JACCARD_THRESHOLD, SIGNATURE_BYTES, bucket_links, jaccard_of_bits};

/// Version of partition files.
pub const PARTITION_VERSION: u32 = 2;

/// What one merge partition found: the duplicate groups of its hash bucket
/// and the near-duplicate links of its band buckets.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionFile {
    /// Always `gantry-data-partition`.
    pub kind: String,
    /// Format version.
    pub version: u32,
    /// Which partition: bucket `index` of `count`.
    pub partition: Shard,
    /// How many shards it read.
    pub shards: u32,
    /// The shards' options.
    pub settings: String,
    /// The data the shards ran on: every file's path, SHA-256 and size.
    pub(crate) data: Vec<(String, u64, Option<String>)>,
    /// Exact-duplicate groups whose hash falls in this bucket.
    pub(crate) exact: Vec<Group>,
    /// Normalized-duplicate groups whose hash falls in this bucket.
    pub(crate) normalized: Vec<Group>,
    /// Near-duplicate links found in this partition's band buckets.
    pub(crate) links: Vec<(Position, Position)>,
    /// Records this partition kept, for the documentation of its share.
    pub entries: u64,
    /// The gantry-data version that wrote it.
    pub written_by: String,
}

impl PartitionFile {
    /// Exact and normalized duplicate groups found.
    pub fn groups(&self) -> usize {
        self.exact.len() + self.normalized.len()
    }

    /// Near-duplicate links found.
    pub fn links(&self) -> usize {
        self.links.len()
    }
}

/// A content-hash group of more than one record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Group {
    hash: ContentHash,
    first: Position,
    count: u64,
    others: Vec<Position>,
}

/// Bucket of a content hash (hashes are uniform: their low bits will do).
fn hash_bucket(hash: u128, count: u32) -> u32 {
    (hash as u64 % u64::from(count)) as u32
}

/// Bucket of band `band`'s key `key`, mixed so the buckets of one band differ from another's.
fn band_bucket(band: usize, key: u32, count: u32) -> u32 {
    let mut mixed = u64::from(key) | ((band as u64) << 32);
    mixed = (mixed ^ (mixed >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    mixed ^= mixed >> 33;
    (mixed % u64::from(count)) as u32
}

fn groups(occurrences: Occurrences) -> Vec<Group> {
    let mut groups: Vec<Group> = occurrences
        .into_iter()
        .map(|(hash, occurrence)| Group {
            hash: ContentHash::from(hash),
            first: occurrence.first,
            count: occurrence.count,
            others: occurrence.others,
        })
        .collect();
    groups.sort_by_key(|group| group.first);
    groups
}

/// Merge partition `partition` (K of P) of the shards `shard_patterns` name.
pub fn merge_partition(shard_patterns: &[String], partition: Shard) -> Result<PartitionFile> {
    let shards = read_shards(shard_patterns, false)?;
    let bucket = partition.index - 1;
    let count = partition.count;
    let fail = |path: &PathBuf| {
        let path = path.display().to_string();
        move |reason: String| Error::Merge {
            reason: format!("{path}: {reason}"),
        }
    };
    // Pass 1: this bucket's content hashes and band keys.
    let mut exact = Vec::new();
    let mut normalized = Vec::new();
    let mut keyed: Vec<(u8, u32, Position)> = Vec::new();
    for (path, _) in &shards {
        let (_, mut reader) = open(path).map_err(fail(path))?;
        exact.extend(
            reader
                .hashes(|hash| hash_bucket(hash, count) == bucket)
                .map_err(fail(path))?,
        );
        normalized.extend(
            reader
                .hashes(|hash| hash_bucket(hash, count) == bucket)
                .map_err(fail(path))?,
        );
        reader
            .signatures(
                |_| false,
                |position, keys| {
                    for (band, key) in keys.iter().enumerate() {
                        if band_bucket(band, *key, count) == bucket {
                            keyed.push((band as u8, *key, position));
                        }
                    }
                },
            )
            .map_err(fail(path))?;
        reader.end().map_err(fail(path))?;
    }
    let entries = (exact.len() + normalized.len() + keyed.len()) as u64;
    let (exact, normalized) = (occurrences(exact), occurrences(normalized));
    keyed.sort_unstable();
    let runs: Vec<&[(u8, u32, Position)]> = keyed
        .chunk_by(|left, right| (left.0, left.1) == (right.0, right.1))
        .filter(|run| run.len() > 1)
        .collect();
    let needed: BTreeSet<Position> = runs
        .iter()
        .flat_map(|run| run.iter().map(|&(_, _, position)| position))
        .collect();
    // Pass 2: the signatures of records that share a key with another.
    let bits = signatures_of(&shards, &needed)?;
    let mut links = Vec::new();
    for run in runs {
        let members: Vec<Position> = run.iter().map(|&(_, _, position)| position).collect();
        let indices: Vec<usize> = (0..members.len()).collect();
        for (a, b) in bucket_links(&indices, |a, b| {
            match (bits.get(&members[a]), bits.get(&members[b])) {
                (Some(left), Some(right)) => jaccard_of_bits(left, right) >= JACCARD_THRESHOLD,
                _ => false,
            }
        }) {
            links.push((members[a], members[b]));
        }
    }
    links.sort_unstable();
    links.dedup();
    let (_, first) = &shards[0];
    Ok(PartitionFile {
        kind: "gantry-data-partition".to_owned(),
        version: PARTITION_VERSION,
        partition,
        shards: first.shard.count,
        settings: first.settings.clone(),
        data: first.data_identity(),
        exact: groups(exact),
        normalized: groups(normalized),
        links,
        entries,
        written_by: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// The 4-bit signatures of `needed` records, read from every shard.
fn signatures_of(
    shards: &[(PathBuf, super::ShardFile)],
    needed: &BTreeSet<Position>,
) -> Result<HashMap<Position, [u8; SIGNATURE_BYTES]>> {
    let mut bits = HashMap::new();
    if needed.is_empty() {
        return Ok(bits);
    }
    for (path, _) in shards {
        let fail = |reason: String| Error::Merge {
            reason: format!("{}: {reason}", path.display()),
        };
        let (_, mut reader) = open(path).map_err(fail)?;
        reader.hashes(|_| false).map_err(fail)?;
        reader.hashes(|_| false).map_err(fail)?;
        let kept = reader
            .signatures(
                |position| needed.contains(&position),
                |_, _: &[u32; BANDS]| {},
            )
            .map_err(fail)?;
        bits.extend(kept);
    }
    Ok(bits)
}

/// Combines the partition files `partition_patterns` name with the shards'
/// headers into one validation: the last, small step of a partitioned merge.
pub fn merge_partitions(
    options: &ValidateOptions,
    shard_patterns: &[String],
    partition_patterns: &[String],
) -> Result<Validation> {
    let shards = read_shards(shard_patterns, false)?;
    let identity = shards[0].1.data_identity();
    let settings = shards[0].1.settings.clone();
    let shard_count = shards[0].1.shard.count;
    let mut partitions: Vec<(PathBuf, PartitionFile)> = Vec::new();
    for path in expand(partition_patterns, "partition")? {
        let fail = |reason: String| Error::Merge {
            reason: format!("{}: {reason}", path.display()),
        };
        let text = std::fs::read(&path).map_err(|error| fail(error.to_string()))?;
        let partition: PartitionFile = serde_json::from_slice(&text)
            .map_err(|error| fail(format!("not a gantry partition file: {error}")))?;
        if partition.kind != "gantry-data-partition" {
            return Err(fail("not a gantry partition file".to_owned()));
        }
        if partition.version != PARTITION_VERSION {
            return Err(fail(format!(
                "partition format {} is not this gantry's ({PARTITION_VERSION}); run the partitions and the final step with the same gantry version",
                partition.version
            )));
        }
        if partition.settings != settings
            || partition.data != identity
            || partition.shards != shard_count
        {
            return Err(fail(
                "it was made from other shards (other data, options or shard count)".to_owned(),
            ));
        }
        partitions.push((path, partition));
    }
    partitions.sort_by_key(|(_, partition)| partition.partition.index);
    let count = partitions[0].1.partition.count;
    let indices: Vec<u32> = partitions
        .iter()
        .map(|(_, partition)| partition.partition.index)
        .collect();
    if indices != (1..=count).collect::<Vec<_>>()
        || partitions
            .iter()
            .any(|(_, partition)| partition.partition.count != count)
    {
        return Err(Error::Merge {
            reason: format!(
                "expected partitions 1..={count} of {count} once each, got {indices:?}"
            ),
        });
    }
    let mut exact = Occurrences::default();
    let mut normalized = Occurrences::default();
    let mut links = Vec::new();
    for (_, partition) in partitions {
        for (target, groups) in [
            (&mut exact, partition.exact),
            (&mut normalized, partition.normalized),
        ] {
            for group in groups {
                target.insert(
                    u128::from(group.hash),
                    Occurrence {
                        first: group.first,
                        count: group.count,
                        others: group.others,
                    },
                );
            }
        }
        links.extend(partition.links);
    }
    let near = clusters_of(&links);
    let pairs = near_example_pairs(&near);
    let needed: BTreeSet<Position> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let bits = signatures_of(&shards, &needed)?;
    let near_jaccard = pairs
        .into_iter()
        .filter_map(|pair| {
            Some((
                pair,
                jaccard_of_bits(bits.get(&pair.0)?, bits.get(&pair.1)?),
            ))
        })
        .collect();
    let (scan, merged_options) = combine(options, shards)?;
    finish_with(
        &merged_options,
        scan,
        Some(Duplicates {
            exact,
            normalized,
            near,
            near_jaccard,
        }),
    )
}

/// Connected groups of linked records: members in data order, groups
/// ordered by their first member (as [`crate::neardup::clusters`] gives them).
fn clusters_of(links: &[(Position, Position)]) -> Vec<Vec<Position>> {
    let nodes: BTreeSet<Position> = links.iter().flat_map(|&(a, b)| [a, b]).collect();
    let nodes: Vec<Position> = nodes.into_iter().collect();
    let index: BTreeMap<Position, usize> = nodes
        .iter()
        .enumerate()
        .map(|(at, node)| (*node, at))
        .collect();
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn find(parent: &mut [usize], mut node: usize) -> usize {
        while parent[node] != node {
            parent[node] = parent[parent[node]];
            node = parent[node];
        }
        node
    }
    for (a, b) in links {
        let (ra, rb) = (find(&mut parent, index[a]), find(&mut parent, index[b]));
        match ra.cmp(&rb) {
            std::cmp::Ordering::Less => parent[rb] = ra,
            std::cmp::Ordering::Greater => parent[ra] = rb,
            std::cmp::Ordering::Equal => {}
        }
    }
    let mut groups: BTreeMap<usize, Vec<Position>> = BTreeMap::new();
    for (at, node) in nodes.iter().enumerate() {
        let root = find(&mut parent, at);
        groups.entry(root).or_default().push(*node);
    }
    groups
        .into_values()
        .filter(|group| group.len() > 1)
        .collect()
}
