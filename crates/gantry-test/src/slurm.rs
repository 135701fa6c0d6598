//! A one-node Slurm cluster for tests: munge, `slurmctld` and `slurmd` with
//! a configuration of their own (free ports, state in a temporary
//! directory), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::oci::{free_port, services_required};

const MUNGE_SOCKET: &str = "/run/munge/munge.socket.2";
const MUNGE_PID: &str = "/run/munge/munged.pid";

/// A running one-node cluster; point Slurm's commands at it with
/// `SLURM_CONF` = [`SlurmCluster::conf`].
#[derive(Debug)]
pub struct SlurmCluster {
    /// The cluster's `slurm.conf`.
    pub conf: PathBuf,
    /// State, spool, logs and pid files.
    pub directory: tempfile::TempDir,
    started_munge: bool,
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// SIGTERM, then SIGKILL after five seconds.
fn stop(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

impl SlurmCluster {
    /// Starts the cluster, or `None` (a skip) when Slurm is not installed
    /// and services are optional.
    ///
    /// # Panics
    /// When Slurm is required (`GANTRY_REQUIRE_SERVICES`) but missing, or
    /// the node does not come up.
    pub fn start() -> Option<SlurmCluster> {
        let installed = Command::new("slurmctld").arg("-V").output().is_ok()
            && Command::new("munged").arg("--version").output().is_ok();
        if !installed {
            assert!(
                !services_required(),
                "Slurm is required (GANTRY_REQUIRE_SERVICES is set) but slurmctld or munged is missing; run `cargo xtask test`"
            );
            #[allow(clippy::print_stderr, reason = "a skipped test says why")]
            {
                eprintln!("skipping: Slurm is not installed (cargo xtask test installs slurm-wlm)");
            }
            return None;
        }
        let mut started_munge = false;
        if !Path::new(MUNGE_SOCKET).exists() {
            std::fs::create_dir_all("/run/munge").expect("/run/munge");
            let _ = Command::new("chown")
                .args(["munge:munge", "/run/munge"])
                .status();
            let status = Command::new("munged")
                .arg("--force")
                .status()
                .expect("munged");
            assert!(status.success(), "munged failed to start");
            started_munge = true;
        }
        let directory = tempfile::tempdir().expect("tempdir");
        let root = directory.path();
        std::fs::create_dir_all(root.join("state")).expect("state");
        std::fs::create_dir_all(root.join("spool")).expect("spool");
        let host = String::from_utf8(Command::new("hostname").output().expect("hostname").stdout)
            .expect("utf8")
            .trim()
            .to_owned();
        let conf = root.join("slurm.conf");
        let text = format!(
            "ClusterName=gantry\n\
             SlurmctldHost={host}\n\
             AuthType=auth/munge\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             SlurmctldPort={ctld}\n\
             SlurmdPort={slurmd}\n\
             StateSaveLocation={root}/state\n\
             SlurmdSpoolDir={root}/spool\n\
             SlurmctldPidFile={root}/slurmctld.pid\n\
             SlurmdPidFile={root}/slurmd.pid\n\
             SlurmctldLogFile={root}/slurmctld.log\n\
             SlurmdLogFile={root}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\n\
             ReturnToService=2\n\
             KillWait=5\n\
             MinJobAge=600\n\
             InactiveLimit=0\n\
             MpiDefault=none\n\
             NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            ctld = free_port(),
            slurmd = free_port(),
            root = root.display(),
            cpus = std::thread::available_parallelism().map_or(1, usize::from),
        );
        std::fs::write(&conf, text).expect("slurm.conf");
        let cluster = SlurmCluster {
            conf,
            directory,
            started_munge,
        };
        for daemon in ["slurmctld", "slurmd"] {
            let status = Command::new(daemon)
                .env("SLURM_CONF", &cluster.conf)
                .status()
                .unwrap_or_else(|error| panic!("{daemon}: {error}"));
            assert!(status.success(), "{daemon} failed to start");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = Command::new("sinfo")
                .args(["-h", "-o", "%t"])
                .env("SLURM_CONF", &cluster.conf)
                .output()
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
                .unwrap_or_default();
            if state == "idle" {
                return Some(cluster);
            }
            assert!(
                Instant::now() < deadline,
                "the Slurm node did not come up (state {state:?}); see {}",
                cluster.directory.path().join("slurmctld.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `scontrol ARGS…` against this cluster; its stdout.
    ///
    /// # Panics
    /// When scontrol fails.
    pub fn scontrol(&self, args: &[&str]) -> String {
        let output = Command::new("scontrol")
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .expect("scontrol");
        assert!(
            output.status.success(),
            "scontrol {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let root = self.directory.path();
        for pid_file in ["slurmd.pid", "slurmctld.pid"] {
            if let Some(pid) = read_pid(&root.join(pid_file)) {
                stop(pid);
            }
        }
        if self.started_munge
            && let Some(pid) = read_pid(Path::new(MUNGE_PID))
        {
            stop(pid);
        }
    }
}
