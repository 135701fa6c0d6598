//! Near duplicates: MinHash over word 5-grams, 14 bands of 8 rows, confirmed on the full signature.
//!
//! The banding matches datatrove's defaults (14 × 8, word 5-grams on
//! normalized text), so a pair with Jaccard similarity 0.8 becomes a
//! candidate with probability 0.92 and one at 0.5 with probability 0.05.
//! Candidates are confirmed when the Jaccard similarity estimated from all
//! 112 hashes (kept as 4-bit b-bit MinHash values, bias-corrected) is at
//! least 0.8. Each record keeps 56 + 14 × 4 bytes: its signature and band
//! keys — what a shard file stores per record, beside its content hashes.
//!
//! Four bits per hash estimate a Jaccard of 0.8 with a standard error of
//! 0.039 (eight bits: 0.038). Band keys are 32 bits: two records whose keys
//! collide are compared and told apart by their signatures, and a bucket's
//! members are compared with each of its distinct groups' first members (up
//! to [`MAX_LEADERS`]), so a collision costs a comparison, never a missed pair.

use std::sync::LazyLock;

use xxhash_rust::xxh3::xxh3_64;

use crate::words::Words;

/// Bands.
pub const BANDS: usize = 14;
/// Rows (hashes) per band.
pub const ROWS: usize = 8;
/// Hashes per signature.
pub const HASHES: usize = BANDS * ROWS;
/// Words per shingle.
pub const SHINGLE_WORDS: usize = 5;
/// Estimated Jaccard similarity at which a candidate pair is a near duplicate.
pub const JACCARD_THRESHOLD: f64 = 0.8;
/// Bytes of a signature's 4-bit values.
pub const SIGNATURE_BYTES: usize = HASHES / 2;
/// Distinct groups a band bucket's members are compared with, at most.
pub const MAX_LEADERS: usize = 16;

/// A record's MinHash signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "SignatureData", try_from = "SignatureData")]
pub struct Signature {
    /// 4 mixed bits of each of the 112 minimum hashes, two to a byte (hash
    /// `2i` in the low half of byte `i`).
    pub bits: [u8; SIGNATURE_BYTES],
    /// One key per band: 32 bits of a hash of the band's 8 full minimum hashes.
    pub bands: [u32; BANDS],
}

/// How a signature is stored in shard files (serde has no arrays over 32 long).
#[derive(serde::Serialize, serde::Deserialize)]
struct SignatureData {
    bits: Vec<u8>,
    bands: Vec<u32>,
}

impl From<Signature> for SignatureData {
    fn from(signature: Signature) -> SignatureData {
        SignatureData {
            bits: signature.bits.to_vec(),
            bands: signature.bands.to_vec(),
        }
    }
}

impl TryFrom<SignatureData> for Signature {
    type Error = String;

    fn try_from(data: SignatureData) -> Result<Signature, String> {
        Ok(Signature {
            bits: data.bits.try_into().map_err(|bits: Vec<u8>| {
                format!(
                    "a signature has {SIGNATURE_BYTES} bytes, not {}",
                    bits.len()
                )
            })?,
            bands: data.bands.try_into().map_err(|bands: Vec<u32>| {
                format!("a signature has {BANDS} bands, not {}", bands.len())
            })?,
        })
    }
}

/// Multipliers and offsets of the 112 hash functions `a·x + b` mod 2³² (a odd), fixed
/// by a seeded SplitMix64 so signatures are the same on every machine.
static PERMUTATIONS: LazyLock<([u32; HASHES], [u32; HASHES])> = LazyLock::new(|| {
    let mut state = 0x5eed_6a47_72e5_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut multipliers = [0_u32; HASHES];
    let mut offsets = [0_u32; HASHES];
    for (multiplier, offset) in multipliers.iter_mut().zip(offsets.iter_mut()) {
        *multiplier = (next() as u32) | 1;
        *offset = next() as u32;
    }
    (multipliers, offsets)
});

/// The signature of a text's word 5-grams; `None` when it has no words.
pub fn signature<'a>(texts: impl Iterator<Item = &'a str>) -> Option<Signature> {
    signature_of(&Words::of(texts))
}

/// The signature of the 5-grams of `words` (one shingle of all of them when
/// there are fewer than five).
pub(crate) fn signature_of(words: &Words) -> Option<Signature> {
    let n = words.hashes().len();
    if n == 0 {
        return None;
    }
    let fold = |shingle: u64| (shingle ^ (shingle >> 32)) as u32;
    let (multipliers, offsets) = &*PERMUTATIONS;
    let mut minimums = [u32::MAX; HASHES];
    if n < SHINGLE_WORDS {
        minimize(
            &[fold(words.window(0, n))],
            multipliers,
            offsets,
            &mut minimums,
        );
    } else {
        // Shingles go through the lanes a block at a time, with no allocation.
        let mut block = [0_u32; 256];
        let mut filled = 0;
        for at in 0..=n - SHINGLE_WORDS {
            block[filled] = fold(words.window(at, SHINGLE_WORDS));
            filled += 1;
            if filled == block.len() {
                minimize(&block, multipliers, offsets, &mut minimums);
                filled = 0;
            }
        }
        minimize(&block[..filled], multipliers, offsets, &mut minimums);
    }
    let mut signature = Signature {
        bits: [0; SIGNATURE_BYTES],
        bands: [0; BANDS],
    };
    for (index, minimum) in minimums.iter().enumerate() {
        // The top bits of a minimum are nearly always zero, so keep 4 bits of
        // a mixed copy instead (b-bit MinHash needs uniform bits).
        let mut mixed = u64::from(*minimum);
        mixed = (mixed ^ (mixed >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        mixed = (mixed ^ (mixed >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        let nibble = ((mixed ^ (mixed >> 33)) & 0xf) as u8;
        signature.bits[index / 2] |= nibble << (4 * (index % 2));
    }
    for (band, key) in signature.bands.iter_mut().enumerate() {
        let mut bytes = [0_u8; ROWS * 4];
        for (row, chunk) in bytes.chunks_mut(4).enumerate() {
            chunk.copy_from_slice(&minimums[band * ROWS + row].to_le_bytes());
        }
        *key = (xxh3_64(&bytes) ^ (band as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) as u32;
    }
    Some(signature)
}

/// The 112 minimums of `a·x + b` over the shingles. 32-bit lanes vectorize:
/// 16 per instruction with AVX-512, 8 with AVX2, chosen at run time, 4 with SSE4.1 (the
/// baseline x86-64 build has no 32-bit vector multiply or minimum).
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2", "x86_64+sse4.1"))]
fn minimize(
    shingles: &[u32],
    multipliers: &[u32; HASHES],
    offsets: &[u32; HASHES],
    minimums: &mut [u32; HASHES],
) {
    for &shingle in shingles {
        for ((minimum, multiplier), offset) in minimums.iter_mut().zip(multipliers).zip(offsets) {
            *minimum = (*minimum).min(shingle.wrapping_mul(*multiplier).wrapping_add(*offset));
        }
    }
}

/// Jaccard similarity estimated from two signatures, corrected for the
/// chance that two different 4-bit values agree.
pub fn estimated_jaccard(left: &Signature, right: &Signature) -> f64 {
    jaccard_of_bits(&left.bits, &right.bits)
}

/// [`estimated_jaccard`] of two signatures' 4-bit values.
pub fn jaccard_of_bits(left: &[u8; SIGNATURE_BYTES], right: &[u8; SIGNATURE_BYTES]) -> f64 {
    let agreeing = left
        .iter()
        .zip(right.iter())
        .map(|(a, b)| {
            let differing = a ^ b;
            u32::from(differing & 0x0f == 0) + u32::from(differing & 0xf0 == 0)
        })
        .sum::<u32>() as f64
        / HASHES as f64;
    let chance = 1.0 / 16.0;
    ((agreeing - chance) / (1.0 - chance)).clamp(0.0, 1.0)
}

/// `(key, index)` for every key in order, sorted by key, then index: a
/// stable radix sort of the keys, eight bits a pass (indices go in in
/// order), which takes a third of the time of a comparison sort of the
/// pairs at hundreds of thousands of records.
fn sorted_by_key(keys: impl Iterator<Item = u32>) -> Vec<(u32, usize)> {
    let mut items: Vec<(u32, usize)> = keys.enumerate().map(|(index, key)| (key, index)).collect();
    let mut scratch = vec![(0_u32, 0_usize); items.len()];
    for shift in [0, 8, 16, 24] {
        let digit = |key: u32| ((key >> shift) & 0xff) as usize;
        let mut counts = [0_usize; 256];
        for &(key, _) in &items {
            counts[digit(key)] += 1;
        }
        // Every key has the same digit here: the pass would change nothing.
        if counts.contains(&items.len()) {
            continue;
        }
        let mut next = [0_usize; 256];
        let mut sum = 0;
        for (slot, count) in next.iter_mut().zip(counts) {
            *slot = sum;
            sum += count;
        }
        for &item in &items {
            let slot = &mut next[digit(item.0)];
            scratch[*slot] = item;
            *slot += 1;
        }
        std::mem::swap(&mut items, &mut scratch);
    }
    items
}

/// Clusters of near-duplicate records: groups of signature indices, each
/// sorted, clusters ordered by their first member. `signatures` are in data order.
///
/// Two records are linked when a band's key is shared and their estimated
/// Jaccard is over the threshold; clusters are the connected groups, so the
/// order links are found in does not matter, and the bands are sorted in
/// parallel (one 16-byte key per record per band at a time). Within a
/// bucket each record is compared with the first member of each group
/// found so far (its leaders, at most [`MAX_LEADERS`]); one that matches
/// none leads a group of its own.
pub fn clusters<S: std::borrow::Borrow<Signature> + Sync>(signatures: &[S]) -> Vec<Vec<usize>> {
    use rayon::prelude::*;
    let signature = |index: usize| signatures[index].borrow();
    let candidates: Vec<Vec<(usize, usize)>> = (0..BANDS)
        .into_par_iter()
        .map(|band| {
            let keyed = sorted_by_key(
                signatures
                    .iter()
                    .map(|signature| signature.borrow().bands[band]),
            );
            let mut links = Vec::new();
            // Nearly every bucket holds one record, which links to nothing.
            for run in keyed
                .chunk_by(|left, right| left.0 == right.0)
                .filter(|run| run.len() > 1)
            {
                let members: Vec<usize> = run.iter().map(|&(_, index)| index).collect();
                links.extend(bucket_links(&members, |a, b| {
                    estimated_jaccard(signature(a), signature(b)) >= JACCARD_THRESHOLD
                }));
            }
            links
        })
        .collect();
    let mut parent: Vec<usize> = (0..signatures.len()).collect();
    fn find(parent: &mut [usize], mut node: usize) -> usize {
        while parent[node] != node {
            parent[node] = parent[parent[node]];
            node = parent[node];
        }
        node
    }
    for (first, other) in candidates.into_iter().flatten() {
        let (root_first, root_other) = (find(&mut parent, first), find(&mut parent, other));
        // The earlier record is the root, so each cluster is named by its first member.
        match root_first.cmp(&root_other) {
            std::cmp::Ordering::Less => parent[root_other] = root_first,
            std::cmp::Ordering::Greater => parent[root_first] = root_other,
            std::cmp::Ordering::Equal => {}
        }
    }
    // Only records with company get a group (most have none).
    let roots: Vec<usize> = (0..signatures.len())
        .map(|index| find(&mut parent, index))
        .collect();
    let mut sizes = vec![0_u32; roots.len()];
    for &root in &roots {
        sizes[root] += 1;
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (index, &root) in roots.iter().enumerate() {
        if sizes[root] > 1 {
            groups.entry(root).or_default().push(index);
        }
    }
    groups.into_values().collect()
}

/// The links of one band bucket (`members` in data order): each member is
/// compared with the leaders so far and linked to every one it matches; a
/// member that matches none becomes a leader, while there is room.
pub fn bucket_links(
    members: &[usize],
    similar: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    let Some((&first, rest)) = members.split_first() else {
        return links;
    };
    let mut leaders = vec![first];
    for &member in rest {
        let mut matched = false;
        for &leader in &leaders {
            if similar(leader, member) {
                links.push((leader, member));
                matched = true;
            }
        }
        if !matched && leaders.len() < MAX_LEADERS {
            leaders.push(member);
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn radix_sorted_keys_are_the_sorted_pairs(keys in proptest::collection::vec(proptest::prop_oneof![0_u32..4, 0xffff_fff0_u32..=u32::MAX, proptest::prelude::any::<u32>()], 0..600)) {
            let mut expected: Vec<(u32, usize)> = keys.iter().copied().zip(0..).collect();
            expected.sort_unstable();
            proptest::prop_assert_eq!(sorted_by_key(keys.into_iter()), expected);
        }
    }

    fn text(n_words: usize, seed: u64) -> Vec<String> {
        let mut state = seed;
        (0..n_words)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                format!("w{}", state >> 50)
            })
            .collect()
    }

    fn signature_of(words: &[String]) -> Signature {
        signature(std::iter::once(words.join(" ").as_str())).expect("words")
    }

    #[test]
    fn similar_texts_cluster_and_different_ones_do_not() {
        let base = text(200, 1);
        let mut edited = base.clone();
        edited[100] = "changed".to_owned(); // One word: 5 of 196 shingles differ, J ≈ 0.95.
        let mut rewritten = base.clone();
        for word in rewritten.iter_mut().step_by(3) {
            *word = "other".to_owned(); // Every third word: almost no shared 5-gram.
        }
        let unrelated = text(200, 2);
        let signatures = vec![
            signature_of(&base),
            signature_of(&unrelated),
            signature_of(&edited),
            signature_of(&rewritten),
        ];
        let similarity = estimated_jaccard(&signatures[0], &signatures[2]);
        assert!(similarity > 0.85, "one edit: {similarity}");
        assert!(estimated_jaccard(&signatures[0], &signatures[3]) < 0.2);
        assert_eq!(clusters(&signatures), vec![vec![0, 2]]);
    }

    #[test]
    fn a_colliding_first_member_does_not_hide_a_pair() {
        // 0 is unrelated (a band key collision); 1, 2 and 4 are alike; 3 too, unlike 0.
        let alike = |a: usize, b: usize| a != 0 && b != 0 && a != 3 || (a, b) == (1, 3);
        assert_eq!(
            bucket_links(&[0, 1, 2, 3, 4], alike),
            vec![(1, 2), (1, 3), (1, 4)]
        );
        // Leaders stop at MAX_LEADERS: later loners only compare with them.
        let members: Vec<usize> = (0..MAX_LEADERS + 3).collect();
        assert!(bucket_links(&members, |_, _| false).is_empty());
        let last = MAX_LEADERS + 2;
        assert_eq!(
            bucket_links(&members, |a, b| (a, b) == (MAX_LEADERS - 1, last)),
            vec![(MAX_LEADERS - 1, last)]
        );
    }

    #[test]
    fn signatures_are_deterministic_and_normalized() {
        let first =
            signature(["Hello, World! This is a TEST of the system."].into_iter()).expect("words");
        let second =
            signature(["hello world this is a test of the system"].into_iter()).expect("words");
        assert_eq!(first, second);
        assert!(signature(["  ...  "].into_iter()).is_none());
    }
}
