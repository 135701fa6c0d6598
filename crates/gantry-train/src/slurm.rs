//! The Slurm backend: each attempt is a batch job submitted with `sbatch`.
//!
//! gantry writes a small batch script per attempt that exports the training
//! contract's variables and what torchrun needs for a multi-node launch
//! (`MASTER_ADDR`, `MASTER_PORT`, `NNODES`, and `NODE_RANK` per node), then
//! starts the command once per node with `srun`. While the job runs gantry
//! follows its output file into the CI log and its state with `scontrol show
//! job`. Cancelling the CI job sends SIGTERM to the command on every node
//! (`scancel --signal=TERM`: the job steps, not `srun` itself), then after
//! the grace period kills the job.
//!
//! gantry owns restarts, so every attempt is a job of its own with the right
//! `GANTRY_RESUME_FROM`: a job Slurm requeued (preemption with
//! `PreemptMode=REQUEUE`, `scontrol requeue`) is cancelled and resubmitted
//! as the next attempt; `PREEMPTED`, `NODE_FAIL`, `BOOT_FAIL` and `TIMEOUT`
//! (the `--time` limit: the next job continues from the checkpoint) are
//! resubmitted too, up to `--max-restarts`.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::launch::{AttemptSpec, Backend, Exit, Running};

/// How often the job's state is asked for.
const STATE_EVERY: Duration = Duration::from_secs(1);

/// What the job asks Slurm for.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--nodes`.
    pub nodes: u32,
    /// `--gpus-per-node` (e.g. `8` or `h100:8`).
    pub gpus_per_node: Option<String>,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm's format: `MM`, `HH:MM:SS`, `D-HH`).
    pub time: Option<String>,
    /// Further `sbatch` arguments, as given.
    pub extra: Vec<String>,
    /// `MASTER_PORT` for multi-node launches.
    pub master_port: u16,
}

/// Submits attempts to Slurm.
#[derive(Debug, Clone)]
pub struct SlurmBackend {
    /// argv, or one script for `sh -c` when `shell`.
    pub command: Vec<String>,
    /// Whether `command` is a shell script.
    pub shell: bool,
    /// The job's name.
    pub job_name: String,
    /// Where batch scripts and job output go (`RUN_DIR/slurm`).
    pub directory: PathBuf,
    /// The job's working directory.
    pub working_dir: PathBuf,
    /// Resources.
    pub options: SlurmOptions,
    /// Copy the job's output to stderr instead of stdout.
    pub output_to_stderr: bool,
}

/// Checks that Slurm's client commands are installed.
pub fn check_installed() -> Result<String> {
    match Command::new("sbatch").arg("--version").output() {
        Ok(output) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
        Ok(output) => Err(Error::Input(format!(
            "--backend slurm: sbatch --version failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(Error::Input(
            "--backend slurm: sbatch is not on PATH; install Slurm's client commands on the runner (Debian: slurm-client) or use --backend local".to_owned(),
        )),
        Err(error) => Err(Error::Input(format!("--backend slurm: cannot run sbatch: {error}"))),
    }
}

/// `'text'` for sh.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl SlurmBackend {
    /// The batch script of an attempt.
    pub fn script(&self, spec: &AttemptSpec) -> String {
        let mut script = String::from(
            "#!/bin/sh\n# Written by gantry train: one attempt of a training run.\nunset GANTRY_RESUME_FROM\n",
        );
        for (key, value) in &spec.env {
            script.push_str(&format!("export {key}={}\n", quote(value)));
        }
        script.push_str(&format!(
            "export GANTRY_BACKEND=slurm\n\
             export NNODES=\"${{SLURM_JOB_NUM_NODES:-1}}\"\n\
             MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" 2>/dev/null | head -n 1)\"\n\
             [ -n \"$MASTER_ADDR\" ] || MASTER_ADDR=\"$(hostname)\"\n\
             export MASTER_ADDR\n\
             export MASTER_PORT={}\n",
            self.options.master_port
        ));
        let command: Vec<String> = if self.shell {
            vec!["sh".to_owned(), "-c".to_owned(), self.command.join(" ")]
        } else {
            self.command.clone()
        };
        let words: Vec<String> = command.iter().map(|word| quote(word)).collect();
        // One task per node; each learns its rank from Slurm.
        script.push_str(&format!(
            "exec srun --ntasks-per-node=1 --kill-on-bad-exit=1 sh -c 'NODE_RANK=\"$SLURM_NODEID\"; export NODE_RANK; exec \"$@\"' gantry-train {}\n",
            words.join(" ")
        ));
        script
    }
}

impl Backend for SlurmBackend {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn start(&mut self, spec: &AttemptSpec) -> Result<Box<dyn Running>> {
        std::fs::create_dir_all(&self.directory).map_err(|error| {
            Error::Input(format!(
                "cannot create {}: {error}",
                self.directory.display()
            ))
        })?;
        let script_path = self.directory.join(format!("attempt-{}.sh", spec.number));
        std::fs::write(&script_path, self.script(spec)).map_err(|error| {
            Error::Input(format!("cannot write {}: {error}", script_path.display()))
        })?;
        let output_pattern = self
            .directory
            .join(format!("attempt-{}-%j.log", spec.number));
        let mut command = Command::new("sbatch");
        command
            .arg("--parsable")
            .arg(format!("--job-name={}", self.job_name))
            .arg(format!("--output={}", output_pattern.display()))
            .arg(format!("--chdir={}", self.working_dir.display()))
            .arg(format!("--nodes={}", self.options.nodes.max(1)));
        if let Some(gpus) = &self.options.gpus_per_node {
            command.arg(format!("--gpus-per-node={gpus}"));
        }
        if let Some(partition) = &self.options.partition {
            command.arg(format!("--partition={partition}"));
        }
        if let Some(time) = &self.options.time {
            command.arg(format!("--time={time}"));
        }
        command.args(&self.options.extra).arg(&script_path);
        let output = command
            .output()
            .map_err(|error| Error::Input(format!("cannot run sbatch: {error}")))?;
        if !output.status.success() {
            return Err(Error::Input(format!(
                "sbatch refused the job: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let job_id = stdout
            .trim()
            .split(';')
            .next()
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_'))
            .ok_or_else(|| Error::Remote(format!("sbatch answered {stdout:?}, not a job id")))?
            .to_owned();
        let log = self
            .directory
            .join(format!("attempt-{}-{job_id}.log", spec.number));
        Ok(Box::new(SlurmJob {
            job_id,
            log,
            offset: 0,
            checked: None,
            state: "PENDING".to_owned(),
            output_to_stderr: self.output_to_stderr,
            failing_since: None,
            ended: false,
        }))
    }
}

struct SlurmJob {
    job_id: String,
    log: PathBuf,
    offset: u64,
    checked: Option<Instant>,
    state: String,
    output_to_stderr: bool,
    /// Since when `scontrol` has been failing, if it is.
    failing_since: Option<Instant>,
    /// Whether `poll` saw the job end (or gantry cancelled a requeued one).
    ended: bool,
}

/// How long `scontrol` may fail (a busy or restarting controller) before
/// gantry gives up on following the job.
const CONTROLLER_PATIENCE: Duration = Duration::from_secs(120);

/// What `scontrol show job -o` says of a job.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JobInfo {
    /// `JobState`.
    pub state: String,
    /// The exit status of `ExitCode=STATUS:SIGNAL`.
    pub exit_status: i32,
    /// The signal of `ExitCode=STATUS:SIGNAL`.
    pub signal: i32,
    /// `Restarts`: how often Slurm requeued the job.
    pub restarts: u32,
    /// `Reason`.
    pub reason: String,
}

/// Parses one line of `scontrol show job -o`.
pub fn parse_job(line: &str) -> JobInfo {
    let mut info = JobInfo::default();
    for field in line.split_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "JobState" => value.clone_into(&mut info.state),
            "Reason" => value.clone_into(&mut info.reason),
            "Restarts" => info.restarts = value.parse().unwrap_or(0),
            "ExitCode" => {
                let (status, signal) = value.split_once(':').unwrap_or((value, "0"));
                info.exit_status = status.parse().unwrap_or(0);
                info.signal = signal.parse().unwrap_or(0);
            }
            _ => {}
        }
    }
    info
}

/// How a job in `info`'s state ended, or `None` while it has not.
pub fn exit_of(info: &JobInfo) -> Option<Exit> {
    match info.state.as_str() {
        "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED" | "RESIZING"
        | "SIGNALING" | "STAGE_OUT" | "RESV_DEL_HOLD"
            if info.restarts == 0 =>
        {
            None
        }
        "COMPLETED" => Some(Exit::Code(info.exit_status)),
        "FAILED" => Some(if info.signal != 0 {
            Exit::Signal(info.signal)
        } else {
            Exit::Code(info.exit_status)
        }),
        "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL" | "TIMEOUT" => {
            Some(Exit::Preempted(info.state.clone()))
        }
        state if info.restarts > 0 || state.starts_with("REQUEUE") => Some(Exit::Preempted(
            format!("REQUEUED by Slurm (restart {})", info.restarts),
        )),
        state => Some(Exit::SchedulerFailed(state.to_owned())),
    }
}

impl SlurmJob {
    fn scancel(&self, args: &[&str]) -> Result<()> {
        let output = Command::new("scancel")
            .args(args)
            .arg(&self.job_id)
            .output()
            .map_err(|error| Error::Input(format!("cannot run scancel: {error}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Remote(format!(
                "scancel {} {}: {}",
                args.join(" "),
                self.job_id,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// Copies what the job wrote since the last look into gantry's log.
    fn follow_output(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.log) else {
            return;
        };
        let mut appended = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_ok()
            && file.read_to_end(&mut appended).is_ok()
        {
            self.offset += appended.len() as u64;
            if !appended.is_empty() {
                let _ = if self.output_to_stderr {
                    std::io::stderr().write_all(&appended)
                } else {
                    std::io::stdout().write_all(&appended)
                };
            }
        }
    }

    fn info(&self) -> Result<Option<JobInfo>> {
        let output = Command::new("scontrol")
            .args(["show", "job", "-o", &self.job_id])
            .output()
            .map_err(|error| Error::Input(format!("cannot run scontrol: {error}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("Invalid job id") {
                return Ok(None);
            }
            return Err(Error::Remote(format!(
                "scontrol show job {}: {}",
                self.job_id,
                stderr.trim()
            )));
        }
        Ok(Some(parse_job(&String::from_utf8_lossy(&output.stdout))))
    }
}

impl Running for SlurmJob {
    fn poll(&mut self) -> Result<Option<Exit>> {
        if self.checked.is_some_and(|at| at.elapsed() < STATE_EVERY) {
            return Ok(None);
        }
        self.checked = Some(Instant::now());
        self.follow_output();
        let info = match self.info() {
            Ok(info) => {
                self.failing_since = None;
                info
            }
            Err(error) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() < CONTROLLER_PATIENCE {
                    return Ok(None);
                }
                return Err(error);
            }
        };
        let Some(info) = info else {
            self.ended = true;
            self.follow_output();
            return Ok(Some(Exit::SchedulerFailed(format!(
                "job {} is no longer known to Slurm",
                self.job_id
            ))));
        };
        info.state.clone_into(&mut self.state);
        let exit = exit_of(&info);
        if let Some(Exit::Preempted(_)) = &exit
            && info.restarts > 0
        {
            // Slurm will run it again with the old environment: gantry
            // resubmits it itself, resuming from the newest checkpoint.
            let _ = self.scancel(&[]);
            self.state = "REQUEUED".to_owned();
        }
        if exit.is_some() {
            self.ended = true;
            self.follow_output();
        }
        Ok(exit)
    }

    fn terminate(&mut self) -> Result<()> {
        // A job that has not started has nothing to checkpoint.
        if self.state == "PENDING" {
            return self.scancel(&[]);
        }
        // The job steps only: srun, in the batch step, would take SIGTERM as
        // an order to kill its tasks at once. A job between states that
        // cannot take a signal is cancelled.
        self.scancel(&["--signal=TERM"])
            .or_else(|_| self.scancel(&[]))
    }

    fn kill(&mut self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        let _ = self.scancel(&["--signal=KILL", "--full"]);
        self.scancel(&[])
    }

    fn job_id(&self) -> Option<String> {
        Some(self.job_id.clone())
    }

    fn scheduler_state(&self) -> Option<String> {
        Some(self.state.clone())
    }
}

/// The directory for a run's batch scripts and job output.
pub fn directory(run_dir: &Path) -> PathBuf {
    run_dir.join("slurm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_exits() {
        let info = parse_job(
            "JobId=7 JobName=x JobState=FAILED Reason=NonZeroExitCode Restarts=0 ExitCode=143:0 RunTime=00:00:03",
        );
        assert_eq!(info.state, "FAILED");
        assert_eq!(exit_of(&info), Some(Exit::Code(143)));
        let info = parse_job("JobState=FAILED ExitCode=0:9 Restarts=0");
        assert_eq!(exit_of(&info), Some(Exit::Signal(9)));
        let info = parse_job("JobState=RUNNING ExitCode=0:0 Restarts=0");
        assert_eq!(exit_of(&info), None);
        let info = parse_job("JobState=PENDING Reason=BeginTime ExitCode=0:0 Restarts=1");
        assert!(
            matches!(exit_of(&info), Some(Exit::Preempted(reason)) if reason.contains("REQUEUED"))
        );
        let info = parse_job("JobState=NODE_FAIL ExitCode=0:0 Restarts=0");
        assert_eq!(
            exit_of(&info),
            Some(Exit::Preempted("NODE_FAIL".to_owned()))
        );
        let info = parse_job("JobState=OUT_OF_MEMORY ExitCode=0:125 Restarts=0");
        assert_eq!(
            exit_of(&info),
            Some(Exit::SchedulerFailed("OUT_OF_MEMORY".to_owned()))
        );
        let info = parse_job("JobState=COMPLETED ExitCode=0:0 Restarts=0");
        assert_eq!(exit_of(&info), Some(Exit::Code(0)));
    }

    #[test]
    fn scripts_quote_and_launch_one_task_per_node() {
        let backend = SlurmBackend {
            command: vec![
                "python".to_owned(),
                "train.py".to_owned(),
                "--name=it's".to_owned(),
            ],
            shell: false,
            job_name: "gantry".to_owned(),
            directory: PathBuf::from("/tmp/x"),
            working_dir: PathBuf::from("/tmp"),
            options: SlurmOptions {
                nodes: 2,
                master_port: 29500,
                ..SlurmOptions::default()
            },
            output_to_stderr: false,
        };
        let script = backend.script(&AttemptSpec {
            number: 2,
            env: vec![(
                "GANTRY_RESUME_FROM".to_owned(),
                "/ckpt/checkpoint-10".to_owned(),
            )],
        });
        assert!(
            script.contains("export GANTRY_RESUME_FROM='/ckpt/checkpoint-10'\n"),
            "{script}"
        );
        assert!(script.contains("export MASTER_PORT=29500\n"));
        assert!(
            script.contains("gantry-train 'python' 'train.py' '--name=it'\\''s'\n"),
            "{script}"
        );
    }
}
