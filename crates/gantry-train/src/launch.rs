//! The attempt loop: launch, watch, stop, restart from the newest complete
//! checkpoint.
//!
//! One loop for every backend. A [`Backend`] starts an attempt; the loop
//! polls it, follows the metrics file, and acts on the job being cancelled
//! (gantry got SIGTERM, SIGINT or SIGHUP) or `--timeout` running out: it asks
//! the attempt to stop (SIGTERM to the trainer's process group; `scancel
//! --signal=TERM` on Slurm), waits the grace period for the final checkpoint,
//! then kills it. A failed or preempted attempt is restarted, after a
//! backoff, from the newest checkpoint that passes [`crate::checkpoint::Checkpoints::check`],
//! until `--max-restarts` are spent. Exit status 2 is not restarted: the
//! training contract reserves it for bad input, which a restart cannot fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::checkpoint;
use crate::error::Result;
use crate::metrics::{MetricPoint, MetricsFollower};
use crate::record::{Attempt, AttemptOutcome, Status};

/// How often the loop looks at the attempt, the signals and the clock.
const TICK: Duration = Duration::from_millis(50);

/// How often the metrics file is read.
const METRICS_EVERY: Duration = Duration::from_millis(500);

/// Exit status the training contract reserves for bad input.
pub const EXIT_BAD_INPUT: i32 = 2;

/// What an attempt is started with.
#[derive(Debug, Clone)]
pub struct AttemptSpec {
    /// 1 for the first launch.
    pub number: u32,
    /// Environment variables for the command, `GANTRY_RESUME_FROM` included
    /// when the attempt resumes (a backend must not pass on an inherited one).
    pub env: Vec<(String, String)>,
}

/// How an attempt ended, as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The command exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// The scheduler preempted it or its node failed; worth resubmitting.
    Preempted(String),
    /// The scheduler gave up on it otherwise (its state).
    SchedulerFailed(String),
}

/// A running attempt.
pub trait Running {
    /// `Some` once the attempt has ended; it never blocks for long.
    fn poll(&mut self) -> Result<Option<Exit>>;
    /// Asks the attempt to stop (SIGTERM): it should checkpoint and exit.
    fn terminate(&mut self) -> Result<()>;
    /// Ends it now (SIGKILL), with everything it started.
    fn kill(&mut self) -> Result<()>;
    /// The scheduler's job id, if any.
    fn job_id(&self) -> Option<String> {
        None
    }
    /// The scheduler's last state, if any.
    fn scheduler_state(&self) -> Option<String> {
        None
    }
}

/// Where attempts run.
pub trait Backend {
    /// `local`, `slurm`.
    fn name(&self) -> &'static str;
    /// Starts an attempt.
    fn start(&mut self, spec: &AttemptSpec) -> Result<Box<dyn Running>>;
}

/// The loop's settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Restarts after the first attempt.
    pub max_restarts: u32,
    /// Wait before the first restart; doubled each time, at most 5 minutes.
    pub restart_backoff: Duration,
    /// Wall time for the whole run.
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub grace_period: Duration,
    /// Warn when no metric arrived this long after an attempt started;
    /// `None` for a command that writes no metrics (prepare's conversions).
    pub metrics_silence: Option<Duration>,
}

/// What the loop tells its caller as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// An attempt starts.
    Started {
        /// Its number.
        number: u32,
        /// The checkpoint it resumes from.
        resumed_from: Option<&'a Path>,
    },
    /// An attempt ended.
    Ended(&'a Attempt),
    /// New metric values.
    Metrics(&'a [MetricPoint]),
    /// Something to say.
    Info(String),
    /// Something worth a warning (also kept for the record).
    Warning(String),
}

/// What the loop produced.
#[derive(Debug)]
pub struct Outcome {
    /// How the run ended.
    pub status: Status,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// The metrics read.
    pub metrics: MetricsFollower,
    /// The warnings given, for the record.
    pub warnings: Vec<String>,
}

/// The job's cancellation flag, set by SIGTERM, SIGINT and SIGHUP once
/// [`Cancellation::on_signals`] registered the handlers.
#[derive(Debug, Clone, Default)]
pub struct Cancellation(Arc<AtomicBool>);

impl Cancellation {
    /// A flag the signals of a cancelled CI job (SIGTERM, SIGINT, SIGHUP) set.
    pub fn on_signals() -> Result<Cancellation> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ] {
            signal_hook::flag::register(signal, Arc::clone(&flag)).map_err(|error| {
                crate::Error::Input(format!("cannot install a signal handler: {error}"))
            })?;
        }
        Ok(Cancellation(flag))
    }

    /// Cancels, as a signal would.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why the loop stops an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancelled,
    TimedOut,
}

/// Runs attempts on `backend` until one succeeds, the restarts are spent,
/// the job is cancelled or the time runs out.
pub fn run(
    backend: &mut dyn Backend,
    base_env: &[(String, String)],
    checkpoints: &checkpoint::Checkpoints,
    metrics_file: &Path,
    policy: &Policy,
    cancellation: &Cancellation,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome> {
    let started = Instant::now();
    let deadline = policy.timeout.map(|timeout| started + timeout);
    let mut metrics = MetricsFollower::new(metrics_file);
    let mut warnings = Vec::new();
    let mut warn = |text: String, on_event: &mut dyn FnMut(Event<'_>)| {
        warnings.push(text.clone());
        on_event(Event::Warning(text));
    };
    let mut attempts: Vec<Attempt> = Vec::new();
    let status = loop {
        let number = attempts.len() as u32 + 1;
        let point = checkpoints.resume_point()?;
        for (skipped, reason) in &point.skipped {
            warn(
                format!(
                    "passing over checkpoint {}: {reason}",
                    skipped.path.display()
                ),
                on_event,
            );
        }
        let resumed_from: Option<PathBuf> = point.checkpoint.map(|checkpoint| checkpoint.path);
        let mut env = base_env.to_vec();
        // Unset (not empty) without a checkpoint: backends remove any
        // inherited value first.
        if let Some(path) = &resumed_from {
            env.push(("GANTRY_RESUME_FROM".to_owned(), path.display().to_string()));
        }
        env.push(("GANTRY_ATTEMPT".to_owned(), number.to_string()));
        on_event(Event::Started {
            number,
            resumed_from: resumed_from.as_deref(),
        });
        let attempt_started = Instant::now();
        let started_at = now();
        let mut running = backend.start(&AttemptSpec { number, env })?;
        if let Some(job) = running.job_id() {
            on_event(Event::Info(format!(
                "attempt {number}: {} job {job} submitted",
                backend.name()
            )));
        }
        let mut stop: Option<(StopReason, Instant)> = None;
        let mut killed = false;
        let mut last_metrics_read = Instant::now();
        let mut metrics_seen_before = metrics.seen_any();
        let mut silence_warned = false;
        let exit = loop {
            if let Some(exit) = running.poll()? {
                break exit;
            }
            if stop.is_none() {
                let reason = if cancellation.is_cancelled() {
                    Some(StopReason::Cancelled)
                } else if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    Some(StopReason::TimedOut)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    on_event(Event::Info(format!(
                        "{}: asking attempt {number} to stop (SIGTERM); it has {} to checkpoint",
                        match reason {
                            StopReason::Cancelled => "the job was cancelled",
                            StopReason::TimedOut => "--timeout ran out",
                        },
                        humanize(policy.grace_period)
                    )));
                    running.terminate()?;
                    stop = Some((reason, Instant::now()));
                }
            } else if let Some((_, since)) = stop
                && !killed
                && since.elapsed() >= policy.grace_period
            {
                warn(
                    format!(
                        "attempt {number} did not stop within the grace period ({}); killing it",
                        humanize(policy.grace_period)
                    ),
                    on_event,
                );
                running.kill()?;
                killed = true;
            }
            if last_metrics_read.elapsed() >= METRICS_EVERY {
                last_metrics_read = Instant::now();
                let points = metrics.poll();
                if !points.is_empty() {
                    metrics_seen_before = true;
                    on_event(Event::Metrics(&points));
                }
                for notice in metrics.take_notices() {
                    warn(notice, on_event);
                }
                if let Some(silence) = policy.metrics_silence
                    && !metrics_seen_before
                    && !silence_warned
                    && attempt_started.elapsed() >= silence
                {
                    silence_warned = true;
                    warn(
                        format!(
                            "no metrics in {} after {}: is the trainer writing GANTRY_METRICS_FILE (one JSON object per line with an integer \"step\")?",
                            metrics_file.display(),
                            humanize(silence)
                        ),
                        on_event,
                    );
                }
            }
            std::thread::sleep(TICK);
        };
        // Whatever the trainer left running in its group goes with it.
        let _ = running.kill();
        let points = metrics.finish();
        if !points.is_empty() {
            on_event(Event::Metrics(&points));
        }
        for notice in metrics.take_notices() {
            warn(notice, on_event);
        }
        let (outcome, reason) = classify(&exit, stop.map(|(reason, _)| reason), killed);
        let (exit_code, signal) = match &exit {
            Exit::Code(code) => (Some(*code), None),
            Exit::Signal(signal) => (None, Some(signal_name(*signal))),
            Exit::Preempted(_) | Exit::SchedulerFailed(_) => (None, None),
        };
        let attempt = Attempt {
            number,
            started: started_at,
            ended: now(),
            duration_s: attempt_started.elapsed().as_secs_f64(),
            resumed_from: resumed_from.map(|path| path.display().to_string()),
            exit_code,
            signal,
            outcome,
            reason,
            job_id: running.job_id(),
            scheduler_state: running.scheduler_state(),
        };
        on_event(Event::Ended(&attempt));
        attempts.push(attempt);
        match outcome {
            AttemptOutcome::Succeeded => break Status::Succeeded,
            AttemptOutcome::Cancelled => break Status::Cancelled,
            AttemptOutcome::TimedOut => break Status::TimedOut,
            AttemptOutcome::Failed | AttemptOutcome::Preempted => {}
        }
        if exit == Exit::Code(EXIT_BAD_INPUT) {
            warn(
                format!(
                    "attempt {number} exited {EXIT_BAD_INPUT}, which the training contract reserves for bad input: not restarting"
                ),
                on_event,
            );
            break Status::Failed;
        }
        if let Exit::SchedulerFailed(state) = &exit {
            warn(
                format!("the scheduler ended attempt {number} as {state}: not restarting"),
                on_event,
            );
            break Status::Failed;
        }
        let restarts = number - 1;
        if restarts >= policy.max_restarts {
            if policy.max_restarts > 0 {
                warn(
                    format!(
                        "attempt {number} failed and all {} restarts are spent",
                        policy.max_restarts
                    ),
                    on_event,
                );
            }
            break Status::Failed;
        }
        let backoff = policy
            .restart_backoff
            .saturating_mul(1 << restarts.min(16))
            .min(Duration::from_secs(300));
        on_event(Event::Info(format!(
            "restarting in {} (restart {} of {})",
            humanize(backoff),
            restarts + 1,
            policy.max_restarts
        )));
        let wake = Instant::now() + backoff;
        let mut interrupted = None;
        while Instant::now() < wake {
            if cancellation.is_cancelled() {
                interrupted = Some(Status::Cancelled);
                break;
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                interrupted = Some(Status::TimedOut);
                break;
            }
            std::thread::sleep(TICK);
        }
        if let Some(status) = interrupted {
            break status;
        }
    };
    if policy.metrics_silence.is_some() && !metrics.seen_any() {
        warn(
            format!(
                "the trainer wrote no metrics to {}: the run record has none and there is no loss curve",
                metrics_file.display()
            ),
            on_event,
        );
    }
    Ok(Outcome {
        status,
        attempts,
        metrics,
        warnings,
    })
}

fn classify(exit: &Exit, stop: Option<StopReason>, killed: bool) -> (AttemptOutcome, String) {
    let how = match exit {
        Exit::Code(0) => "exited 0".to_owned(),
        Exit::Code(code) => format!("exited {code}"),
        Exit::Signal(signal) => format!("killed by {}", signal_name(*signal)),
        Exit::Preempted(state) | Exit::SchedulerFailed(state) => format!("ended as {state}"),
    };
    if let Some(stop) = stop {
        let after = if killed {
            "killed after the grace period"
        } else {
            "stopped within the grace period"
        };
        let (outcome, why) = match stop {
            StopReason::Cancelled => (AttemptOutcome::Cancelled, "job cancelled"),
            StopReason::TimedOut => (AttemptOutcome::TimedOut, "--timeout ran out"),
        };
        // A trainer that finished in the grace period still finished.
        if *exit == Exit::Code(0) {
            return (AttemptOutcome::Succeeded, format!("{why}, but it {how}"));
        }
        return (outcome, format!("{why}; {after} ({how})"));
    }
    match exit {
        Exit::Code(0) => (AttemptOutcome::Succeeded, how),
        Exit::Preempted(_) => (AttemptOutcome::Preempted, how),
        Exit::Signal(9) => (
            AttemptOutcome::Failed,
            format!("{how} (out of memory, or killed by someone)"),
        ),
        _ => (AttemptOutcome::Failed, how),
    }
}

/// `SIGKILL` for 9 and so on.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// `1.5s`, `2m`, `1h 5m`.
pub fn humanize(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 {
        let text = format!("{seconds:.1}");
        format!("{}s", text.trim_end_matches(".0"))
    } else if seconds < 3600.0 {
        let whole = duration.as_secs();
        match whole % 60 {
            0 => format!("{}m", whole / 60),
            rest => format!("{}m {rest}s", whole / 60),
        }
    } else {
        let whole = duration.as_secs();
        format!("{}h {}m", whole / 3600, (whole % 3600) / 60)
    }
}

/// Parses `90`, `90s`, `15m`, `2h`, `1h30m`, `1d`, `500ms`: seconds when no unit is given.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let invalid = || format!("{text:?}: expected a duration such as 90s, 15m, 2h or 1h30m");
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        rest = &rest[unit_end..];
        total = total
            .checked_add(
                unit.checked_mul(u32::try_from(number).map_err(|_| invalid())?)
                    .ok_or_else(invalid)?,
            )
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

/// The time now, RFC 3339 in UTC to the millisecond.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_exits_and_stops() {
        let (outcome, reason) = classify(&Exit::Signal(9), None, false);
        assert_eq!(outcome, AttemptOutcome::Failed);
        assert!(reason.contains("SIGKILL"));
        let (outcome, reason) = classify(&Exit::Code(143), Some(StopReason::Cancelled), false);
        assert_eq!(outcome, AttemptOutcome::Cancelled);
        assert!(reason.contains("within the grace period"), "{reason}");
        let (outcome, _) = classify(&Exit::Signal(9), Some(StopReason::TimedOut), true);
        assert_eq!(outcome, AttemptOutcome::TimedOut);
        let (outcome, _) = classify(&Exit::Code(0), Some(StopReason::Cancelled), false);
        assert_eq!(outcome, AttemptOutcome::Succeeded);
        let (outcome, _) = classify(&Exit::Preempted("PREEMPTED".to_owned()), None, false);
        assert_eq!(outcome, AttemptOutcome::Preempted);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(humanize(Duration::from_millis(1500)), "1.5s");
        assert_eq!(humanize(Duration::from_secs(30)), "30s");
        assert_eq!(humanize(Duration::from_secs(120)), "2m");
        assert_eq!(humanize(Duration::from_secs(125)), "2m 5s");
        assert_eq!(humanize(Duration::from_secs(3900)), "1h 5m");
    }
}
