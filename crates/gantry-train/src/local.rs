//! The local backend: the command runs on the runner host, in a process
//! group of its own so that stopping it reaches every process it started
//! (data loader workers, torchrun's children).

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::error::{Error, Result};
use crate::launch::{AttemptSpec, Backend, Exit, Running};

/// Runs the command as a child of gantry.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    /// argv, or one script for `sh -c` when `shell`.
    pub command: Vec<String>,
    /// Whether `command` is a shell script.
    pub shell: bool,
    /// The working directory (gantry's own when `None`).
    pub working_dir: Option<PathBuf>,
    /// Send the command's stdout to gantry's stderr (when gantry's stdout
    /// carries JSON).
    pub stdout_to_stderr: bool,
}

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&mut self, spec: &AttemptSpec) -> Result<Box<dyn Running>> {
        let (program, args) = if self.shell {
            (
                "sh".to_owned(),
                vec!["-c".to_owned(), self.command.join(" ")],
            )
        } else {
            let Some((program, args)) = self.command.split_first() else {
                return Err(crate::error::given(
                    "training command",
                    "",
                    "no training command was given",
                ));
            };
            (program.clone(), args.to_vec())
        };
        let mut command = Command::new(&program);
        command
            .args(&args)
            .env_remove("GANTRY_RESUME_FROM")
            .envs(spec.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .process_group(0);
        if self.stdout_to_stderr {
            command.stdout(std::io::stderr());
        }
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                crate::error::given(
                    "training command",
                    format!("{program:?}"),
                    "not a program on PATH (a shell command line runs with --shell)",
                )
            } else {
                crate::error::given(
                    "training command",
                    format!("{program:?}"),
                    format!("cannot start it: {error}"),
                )
            }
        })?;
        let group = i32::try_from(child.id())
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| Error::Input(format!("odd process id {}", child.id())))?;
        Ok(Box::new(LocalRunning { child, group }))
    }
}

struct LocalRunning {
    child: Child,
    group: Pid,
}

impl LocalRunning {
    fn signal(&self, signal: Signal) -> Result<()> {
        match kill_process_group(self.group, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(error) => Err(Error::Input(format!(
                "cannot signal the training process group {}: {error}",
                self.group.as_raw_nonzero()
            ))),
        }
    }
}

impl Running for LocalRunning {
    fn poll(&mut self) -> Result<Option<Exit>> {
        let status = self
            .child
            .try_wait()
            .map_err(|error| Error::Input(format!("cannot wait for the trainer: {error}")))?;
        Ok(status.map(|status| match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        }))
    }

    fn terminate(&mut self) -> Result<()> {
        self.signal(Signal::TERM)
    }

    fn kill(&mut self) -> Result<()> {
        self.signal(Signal::KILL)
    }
}
