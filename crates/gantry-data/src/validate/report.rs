//! The report: every check's value against its thresholds, with examples, clusters, distributions and drift.

use std::collections::BTreeMap;

use super::ValidateOptions;
use super::record::{
    MAX_CLUSTER_MEMBERS, MAX_EXAMPLES, Occurrence, Occurrences, Partial, Position, keep_largest,
    occurrences,
};
use crate::drift::Summary;
use crate::formats::RecordFormat;
use crate::histogram::LogHistogram;
use crate::lock::DataLock;
use crate::neardup::{Signature, clusters as near_clusters, estimated_jaccard};
use crate::policy::{CheckId, Policy};
use crate::report::{
    CheckResult, Distribution, DuplicateCluster, Example, FileReport, REPORT_VERSION, Report,
};
use crate::source::{DataFile, FileKind};

/// Duplicate clusters listed per kind.
pub(crate) const MAX_CLUSTERS: usize = 10;

/// Adds the drift measures and checks against `reference` to `report`.
pub(crate) fn add_drift(
    report: &mut Report,
    current: &Summary,
    reference: &Summary,
    reference_name: &str,
    policy: &Policy,
) {
    let mut measures = BTreeMap::new();
    let mut notes = Vec::new();
    for (name, reference_histogram, current_histogram) in [
        ("characters", &reference.characters, &current.characters),
        ("tokens", &reference.tokens, &current.tokens),
        ("turns", &reference.turns, &current.turns),
    ] {
        if let Some(measure) = crate::drift::numeric_drift(reference_histogram, current_histogram) {
            notes.push((
                name,
                measure,
                format!(
                    "p50 {} → {}",
                    reference_histogram.quantile(0.5),
                    current_histogram.quantile(0.5)
                ),
            ));
            measures.insert(name.to_owned(), measure);
        }
    }
    if let Some(measure) = crate::drift::categorical_drift(&reference.roles, &current.roles) {
        notes.push(("roles", measure, "message shares by role".to_owned()));
        measures.insert("roles".to_owned(), measure);
    }
    let index = report
        .checks
        .iter()
        .position(|check| check.id == CheckId::MinRecords)
        .unwrap_or(report.checks.len());
    let mut drift_checks = Vec::new();
    for (id, value_of) in [
        (
            CheckId::DriftPsi,
            (|measure: &crate::drift::DriftMeasure| measure.psi)
                as fn(&crate::drift::DriftMeasure) -> f64,
        ),
        (CheckId::DriftJs, |measure| measure.jensen_shannon),
        (CheckId::DriftWasserstein, |measure| {
            measure.wasserstein.unwrap_or(0.0)
        }),
    ] {
        let check_policy = policy.check(id);
        let limit = check_policy
            .warn
            .or(check_policy.error)
            .unwrap_or(f64::INFINITY);
        let value = notes
            .iter()
            .map(|(_, measure, _)| value_of(measure))
            .fold(0.0, f64::max);
        let examples: Vec<Example> = notes
            .iter()
            .filter(|(_, measure, _)| value_of(measure) > limit)
            .map(|(name, measure, detail)| Example {
                file: reference_name.to_owned(),
                line: None,
                byte: None,
                record: None,
                message: format!(
                    "{name}: PSI {:.3}, Jensen–Shannon {:.3}{} ({detail})",
                    measure.psi,
                    measure.jensen_shannon,
                    measure
                        .wasserstein
                        .map(|distance| format!(", Wasserstein {distance:.3} sd"))
                        .unwrap_or_default()
                ),
                excerpt: None,
            })
            .collect();
        let count = examples.len() as u64;
        drift_checks.push(CheckResult::scored(
            id,
            check_policy,
            value,
            count,
            examples,
        ));
    }
    for (offset, check) in drift_checks.into_iter().enumerate() {
        let position = index + offset;
        if let Some(existing) = report.checks.iter().position(|known| known.id == check.id) {
            report.checks[existing] = check;
        } else {
            report.checks.insert(position, check);
        }
    }
    report.drift = Some(measures);
    report.verdict = Report::verdict_of(&report.checks);
}

/// The duplicates a report lists: content-hash groups and near-duplicate
/// clusters, found from every record's hashes and signatures in one place
/// ([`Duplicates::of`]) or by the partitions of a partitioned merge.
#[derive(Debug, Default)]
pub(crate) struct Duplicates {
    pub(crate) exact: Occurrences,
    pub(crate) normalized: Occurrences,
    /// Near-duplicate clusters: members in data order, clusters ordered by
    /// their first member.
    pub(crate) near: Vec<Vec<Position>>,
    /// The estimated Jaccard of each (first member, member) pair that
    /// [`near_example_pairs`] names.
    pub(crate) near_jaccard: BTreeMap<(Position, Position), f64>,
}

impl Duplicates {
    /// From every record's hashes and signatures (taken out of `total`).
    pub(crate) fn of(total: &mut Partial) -> Duplicates {
        let (exact, normalized) = rayon::join(
            || occurrences(std::mem::take(&mut total.exact)),
            || occurrences(std::mem::take(&mut total.normalized)),
        );
        // Clustering needs signatures in data order.
        rayon::slice::ParallelSliceMut::par_sort_unstable_by_key(
            total.near.as_mut_slice(),
            |(position, _)| *position,
        );
        let (positions, signatures): (Vec<Position>, Vec<&Signature>) = total
            .near
            .iter()
            .map(|(position, signature)| (*position, signature))
            .unzip();
        let near: Vec<Vec<Position>> = near_clusters(&signatures)
            .into_iter()
            .map(|group| group.into_iter().map(|member| positions[member]).collect())
            .collect();
        // Positions are sorted: the few example pairs are found by search,
        // not through a map of every record.
        let at = |position: &Position| positions.binary_search(position).ok();
        let near_jaccard = near_example_pairs(&near)
            .into_iter()
            .filter_map(|(first, member)| {
                let (a, b) = (at(&first)?, at(&member)?);
                Some((
                    (first, member),
                    estimated_jaccard(signatures[a], signatures[b]),
                ))
            })
            .collect();
        Duplicates {
            exact,
            normalized,
            near,
            near_jaccard,
        }
    }
}

/// The near-duplicate pairs the report shows as examples: each cluster's
/// first member with each other member, in cluster order, at most
/// [`MAX_EXAMPLES`].
pub(crate) fn near_example_pairs(near: &[Vec<Position>]) -> Vec<(Position, Position)> {
    near.iter()
        .flat_map(|group| group[1..].iter().map(move |&member| (group[0], member)))
        .take(MAX_EXAMPLES)
        .collect()
}

/// What the engine gathered from the data, for the report.
pub(crate) struct Gathered<'a> {
    /// The files read, in order.
    pub(crate) files: &'a [DataFile],
    /// The record format found (or given).
    pub(crate) format: Option<RecordFormat>,
    /// Every chunk's partial result, merged.
    pub(crate) total: Partial,
    /// Per-file records and bytes.
    pub(crate) file_reports: Vec<FileReport>,
    /// The data lock written for this run.
    pub(crate) lock: &'a DataLock,
    /// What changed since `--previous-lock`, when given.
    pub(crate) lock_changes: Option<crate::lock::LockDiff>,
    /// The eval items looked for, when `--eval-set` was given.
    pub(crate) eval_items: Option<&'a [crate::contamination::EvalItem]>,
    /// Duplicates found by a partitioned merge; `None`: found from `total`.
    pub(crate) duplicates: Option<Duplicates>,
}

/// Every check's value against its thresholds, with examples, clusters and
/// distributions: the report of what the engine gathered.
pub(crate) fn build_report(options: &ValidateOptions, gathered: Gathered<'_>) -> Report {
    let Gathered {
        files,
        format,
        mut total,
        file_reports,
        lock,
        lock_changes,
        eval_items,
        duplicates: found,
    } = gathered;
    let tokenizer = options.tokenizer.as_str();
    let records = total.records;
    let rate = |count: u64| {
        if records == 0 {
            0.0
        } else {
            count as f64 / records as f64
        }
    };
    let policy = &options.policy;
    let score = |id: CheckId, value: f64, count: u64, examples: Vec<Example>| {
        CheckResult::scored(id, policy.check(id), value, count, examples)
    };
    let duplicates = |map: &Occurrences| {
        map.values()
            .map(|occurrence| occurrence.count - 1)
            .sum::<u64>()
    };
    let cluster_examples = |map: &Occurrences, kind: &str| -> Vec<Example> {
        let mut clusters: Vec<&Occurrence> = map
            .values()
            .filter(|occurrence| occurrence.count > 1)
            .collect();
        clusters.sort_by_key(|occurrence| occurrence.first);
        clusters
            .iter()
            .flat_map(|occurrence| {
                occurrence
                    .others
                    .iter()
                    .map(move |other| (*other, occurrence.first))
            })
            .take(MAX_EXAMPLES)
            .map(|(position, first)| {
                example_at(
                    files,
                    position,
                    format!("{kind} duplicate of {}", place(files, first)),
                )
            })
            .collect()
    };
    let Duplicates {
        exact,
        normalized,
        near: near_groups,
        near_jaccard,
    } = found.unwrap_or_else(|| Duplicates::of(&mut total));
    let n_exact = duplicates(&exact);
    let n_normalized = duplicates(&normalized);
    let mut checks = vec![
        score(
            CheckId::Parse,
            total.parse.count as f64,
            total.parse.count,
            total.parse.clone().into_examples(),
        ),
        score(
            CheckId::Schema,
            total.schema.count as f64,
            total.schema.count,
            total.schema.clone().into_examples(),
        ),
        score(
            CheckId::EmptyContent,
            rate(total.empty.count),
            total.empty.count,
            total.empty.clone().into_examples(),
        ),
    ];
    checks.push(match options.max_tokens {
        Some(_) => score(
            CheckId::MaxTokens,
            total.over_tokens.count as f64,
            total.over_tokens.count,
            total.over_tokens.clone().into_examples(),
        ),
        None => CheckResult::skipped(
            CheckId::MaxTokens,
            "pass --max-tokens to check record lengths against a model's limit".to_owned(),
        ),
    });
    checks.push(score(
        CheckId::ExactDuplicates,
        rate(n_exact),
        n_exact,
        cluster_examples(&exact, "exact"),
    ));
    checks.push(score(
        CheckId::NormalizedDuplicates,
        rate(n_normalized),
        n_normalized,
        cluster_examples(&normalized, "normalized"),
    ));
    // Near duplicates: records in a MinHash cluster after its first member.
    let n_near: u64 = near_groups.iter().map(|group| group.len() as u64 - 1).sum();
    let near_examples: Vec<Example> = near_example_pairs(&near_groups)
        .into_iter()
        .map(|(first, member)| {
            let jaccard = near_jaccard
                .get(&(first, member))
                .map_or_else(|| "?".to_owned(), |jaccard| format!("{jaccard:.2}"));
            example_at(
                files,
                member,
                format!(
                    "near duplicate of {} (estimated Jaccard {jaccard})",
                    place(files, first),
                ),
            )
        })
        .collect();
    checks.push(score(
        CheckId::NearDuplicates,
        rate(n_near),
        n_near,
        near_examples,
    ));
    checks.push(score(
        CheckId::Secrets,
        total.secrets.count as f64,
        total.secrets.count,
        total.secrets.clone().into_examples(),
    ));
    checks.push(score(
        CheckId::Pii,
        rate(total.pii.count),
        total.pii.count,
        total.pii.clone().into_examples(),
    ));
    checks.extend(contamination_checks(eval_items, &total, files, &score));
    let (outlier_rate, outlier_count, outlier_examples) = outliers(&total, files);
    checks.push(score(
        CheckId::Outliers,
        outlier_rate,
        outlier_count,
        outlier_examples,
    ));
    if options.reference.is_none() {
        for id in [
            CheckId::DriftPsi,
            CheckId::DriftJs,
            CheckId::DriftWasserstein,
        ] {
            checks.push(CheckResult::skipped(
                id,
                "pass --reference (a summary.json or earlier data) to measure drift".to_owned(),
            ));
        }
    }
    checks.push(score(
        CheckId::MinRecords,
        records as f64,
        records,
        Vec::new(),
    ));

    let mut duplicate_clusters = Vec::new();
    for (kind, map) in [("exact", &exact), ("normalized", &normalized)] {
        let mut clusters: Vec<&Occurrence> = map
            .values()
            .filter(|occurrence| occurrence.count > 1)
            .collect();
        clusters.sort_by_key(|occurrence| (std::cmp::Reverse(occurrence.count), occurrence.first));
        duplicate_clusters.extend(clusters.into_iter().take(MAX_CLUSTERS).map(|occurrence| {
            DuplicateCluster {
                kind,
                size: occurrence.count,
                members: std::iter::once(occurrence.first)
                    .chain(occurrence.others.iter().copied())
                    .map(|position| place(files, position))
                    .collect(),
            }
        }));
    }
    let mut near_sorted: Vec<&Vec<Position>> = near_groups.iter().collect();
    near_sorted.sort_by_key(|group| (std::cmp::Reverse(group.len()), group[0]));
    duplicate_clusters.extend(near_sorted.into_iter().take(MAX_CLUSTERS).map(|group| {
        DuplicateCluster {
            kind: "near",
            size: group.len() as u64,
            members: group
                .iter()
                .take(MAX_CLUSTER_MEMBERS)
                .map(|&member| place(files, member))
                .collect(),
        }
    }));
    let distribution = |histogram: &LogHistogram| Distribution {
        min: histogram.min,
        p50: histogram.quantile(0.5),
        p90: histogram.quantile(0.9),
        p99: histogram.quantile(0.99),
        max: histogram.max,
        mean: histogram.mean(),
    };
    Report {
        version: REPORT_VERSION,
        verdict: Report::verdict_of(&checks),
        format,
        tokenizer: tokenizer.to_owned(),
        records,
        dataset_digest: lock.dataset_digest,
        files: file_reports,
        characters: distribution(&total.characters),
        tokens: distribution(&total.tokens),
        turns: distribution(&total.turns),
        roles: total.roles,
        conversations_without: [
            ("system".to_owned(), total.without_system),
            ("user".to_owned(), total.without_user),
        ]
        .into_iter()
        .filter(|_| format.is_some_and(RecordFormat::is_conversation))
        .collect(),
        sensitive: total
            .sensitive
            .into_iter()
            .map(|(kind, count)| (kind.to_owned(), count))
            .collect(),
        checks,
        duplicate_clusters,
        drift: None,
        lock_changes,
    }
}

/// The two contamination checks: eval items at least half found (or whole,
/// under 13 words) and eval items with any 13-gram found; skipped without
/// `--eval-set`.
fn contamination_checks(
    eval_items: Option<&[crate::contamination::EvalItem]>,
    total: &Partial,
    files: &[DataFile],
    score: &dyn Fn(CheckId, f64, u64, Vec<Example>) -> CheckResult,
) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    match eval_items {
        Some(eval_items) => {
            let mut hits: Vec<(u32, f64, Position)> = total
                .contamination
                .iter()
                .map(|(item, (ngrams, first))| {
                    (
                        *item,
                        ngrams.len() as f64 / f64::from(eval_items[*item as usize].n_ngrams.max(1)),
                        *first,
                    )
                })
                .collect();
            hits.sort_by(|left, right| right.1.total_cmp(&left.1).then(left.0.cmp(&right.0)));
            let examples = |minimum: f64| -> Vec<Example> {
                hits.iter()
                    .filter(|(_, coverage, _)| *coverage >= minimum)
                    .take(MAX_EXAMPLES)
                    .map(|(item, coverage, first)| {
                        let item = &eval_items[*item as usize];
                        let what = if item.short {
                            "the whole item (under 13 words)".to_owned()
                        } else {
                            format!(
                                "{:.0}% of its {} distinct 13-grams",
                                coverage * 100.0,
                                item.n_ngrams
                            )
                        };
                        let (file, line) = item
                            .place
                            .rsplit_once(':')
                            .map_or((item.place.clone(), None), |(file, line)| {
                                (file.to_owned(), line.parse().ok())
                            });
                        Example {
                            file,
                            line,
                            byte: None,
                            record: None,
                            message: format!(
                                "eval item {}: {what} found in training data, first at {}",
                                item.place,
                                place(files, *first)
                            ),
                            excerpt: None,
                        }
                    })
                    .collect()
            };
            let heavy = hits
                .iter()
                .filter(|(_, coverage, _)| *coverage >= 0.5)
                .count() as u64;
            let any = hits.len() as u64;
            checks.push(score(
                CheckId::Contamination,
                heavy as f64,
                heavy,
                examples(0.5),
            ));
            checks.push(score(
                CheckId::ContaminationPartial,
                any as f64,
                any,
                examples(0.0),
            ));
        }
        None => {
            for id in [CheckId::Contamination, CheckId::ContaminationPartial] {
                checks.push(CheckResult::skipped(
                    id,
                    "pass --eval-set to check eval items against the training data".to_owned(),
                ));
            }
        }
    }
    checks
}

/// Outliers: the largest share of records beyond the median plus five
/// median absolute deviations, in characters, tokens or turns, with the
/// largest records as examples: (rate, count, examples).
fn outliers(total: &Partial, files: &[DataFile]) -> (f64, u64, Vec<Example>) {
    let records = total.records;
    let rate = |count: u64| {
        if records == 0 {
            0.0
        } else {
            count as f64 / records as f64
        }
    };
    let mut outlier_rate: f64 = 0.0;
    let mut outlier_count = 0;
    let mut outlier_examples = Vec::new();
    for (name, histogram, largest) in [
        ("characters", &total.characters, &total.largest[0]),
        ("tokens", &total.tokens, &total.largest[1]),
        ("turns", &total.turns, &total.largest[2]),
    ] {
        let median = histogram.quantile(0.5);
        // A floor on the spread (a tenth of the median, at least 1) keeps
        // near-constant distributions, where the MAD is 0, from flagging
        // every record one above the median.
        let spread = histogram.mad().max(median / 10).max(1);
        let threshold = median + 5 * spread;
        let above = histogram.count_above(threshold);
        if rate(above) > outlier_rate {
            outlier_rate = rate(above);
            outlier_count = above;
        }
        let mut largest = largest.clone();
        keep_largest(&mut largest);
        for (value, position) in largest
            .into_iter()
            .filter(|(value, _)| *value > threshold)
            .take(5)
        {
            outlier_examples.push(example_at(
                files,
                position,
                format!(
                    "{value} {name}, beyond the median {median} + 5 × {spread} (MAD) = {threshold}"
                ),
            ));
        }
    }
    (outlier_rate, outlier_count, outlier_examples)
}

/// An example pointing at the record at `position`: a line, or for JSON
/// arrays and Parquet files, a record index.
pub(crate) fn example_at(files: &[DataFile], position: Position, message: String) -> Example {
    let file = &files[position.0 as usize];
    let by_record = matches!(file.kind, FileKind::Json | FileKind::Parquet);
    Example {
        file: file.display.clone(),
        line: (!by_record).then_some(position.1),
        byte: None,
        record: by_record.then_some(position.1),
        message,
        excerpt: None,
    }
}

pub(crate) fn place(files: &[DataFile], position: Position) -> String {
    let file = &files[position.0 as usize];
    match file.kind {
        FileKind::Json | FileKind::Parquet => format!("{}#{}", file.display, position.1),
        _ => format!("{}:{}", file.display, position.1),
    }
}
