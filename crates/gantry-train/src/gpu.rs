//! The GPUs of a runner host, which of them are free, and kernel-held locks
//! so that two jobs on one host never share a GPU.
//!
//! The inventory comes from `nvidia-smi` (found on `PATH`, so a test can put
//! a fake one first): one CSV row per GPU, plus the compute processes running
//! on each. A GPU is free when no compute process runs on it and less than
//! [`BUSY_MEMORY_MIB`] of its memory is in use. A lease holds one lock file
//! per GPU (`gpu-<uuid>.lock` in the lock directory) with `flock`: the kernel
//! releases it when the holder exits, however it exits — SIGKILL included —
//! so no lock goes stale the way a pid file does.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Memory in use above which a GPU counts as busy even without a listed
/// process (another container's process is invisible to `nvidia-smi`).
pub const BUSY_MEMORY_MIB: u64 = 1024;

/// How often a job waiting for GPUs looks again.
const POLL: Duration = Duration::from_millis(500);

/// One GPU as `nvidia-smi` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// The index `nvidia-smi` gives it (PCI bus order).
    pub index: u32,
    /// `GPU-…`: what `CUDA_VISIBLE_DEVICES` is given, stable across reorderings.
    pub uuid: String,
    /// The model, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Total memory, MiB.
    pub memory_total_mib: u64,
    /// Memory in use, MiB.
    pub memory_used_mib: u64,
    /// The driver version.
    pub driver: String,
    /// Compute processes running on it.
    pub processes: Vec<u32>,
    /// What nvidia-smi reports wrong with it (`GPU requires reset`), if anything.
    pub problem: Option<String>,
}

impl Gpu {
    /// Whether nothing runs on it and nvidia-smi reports nothing wrong.
    pub fn is_free(&self) -> bool {
        self.problem.is_none()
            && self.processes.is_empty()
            && self.memory_used_mib < BUSY_MEMORY_MIB
    }
}

/// Which GPUs a run asks for (`--gpus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuRequest {
    /// No GPU: `CUDA_VISIBLE_DEVICES` is set empty.
    None,
    /// Every GPU of the host.
    All,
    /// Every GPU of the host, or none on a host without GPUs (the default).
    Auto,
    /// This many, whichever are free.
    Count(usize),
    /// These indices.
    List(Vec<u32>),
}

impl std::str::FromStr for GpuRequest {
    type Err = Error;

    fn from_str(text: &str) -> Result<GpuRequest> {
        let invalid = || {
            crate::error::given(
                "GPU request",
                format!("{text:?}"),
                "expected a count (2), all, auto, none, or indices (0,3)",
            )
        };
        match text.trim() {
            "none" | "0" => Ok(GpuRequest::None),
            "all" => Ok(GpuRequest::All),
            "auto" => Ok(GpuRequest::Auto),
            list if list.contains(',') => list
                .split(',')
                .map(|index| index.trim().parse::<u32>().map_err(|_| invalid()))
                .collect::<Result<Vec<_>>>()
                .map(GpuRequest::List),
            count => count
                .parse::<usize>()
                .map(GpuRequest::Count)
                .map_err(|_| invalid()),
        }
    }
}

/// Runs `command`, trying again a few times while its program is "busy"
/// (ETXTBSY): another process forked while the file was open for writing —
/// a driver update replacing `nvidia-smi`, or a test writing its fake one —
/// holds it for a moment.
fn run_retrying_busy(command: &mut Command) -> std::io::Result<std::process::Output> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match command.output() {
            Err(error) if error.raw_os_error() == Some(ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Reads the GPUs from the `nvidia-smi` on `PATH`. A host without
/// `nvidia-smi` has none.
pub fn inventory() -> Result<Vec<Gpu>> {
    inventory_from(Path::new("nvidia-smi"))
}

/// Reads the GPUs from the `nvidia-smi` at `program`.
pub fn inventory_from(program: &Path) -> Result<Vec<Gpu>> {
    let output = match run_retrying_busy(Command::new(program).args([
        "--query-gpu=index,uuid,name,memory.total,memory.used,driver_version",
        "--format=csv,noheader,nounits",
    ])) {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::Input(format!("cannot run nvidia-smi: {error}"))),
    };
    if !output.status.success() {
        return Err(Error::Input(format!(
            "nvidia-smi failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let mut gpus = parse_gpus(&String::from_utf8_lossy(&output.stdout))?;
    let apps = run_retrying_busy(Command::new(program).args([
        "--query-compute-apps=gpu_uuid,pid",
        "--format=csv,noheader,nounits",
    ]))
    .map_err(|error| Error::Input(format!("cannot run nvidia-smi: {error}")))?;
    if apps.status.success() {
        for line in String::from_utf8_lossy(&apps.stdout).lines() {
            let mut fields = line.split(',').map(str::trim);
            if let (Some(uuid), Some(Ok(pid))) = (fields.next(), fields.next().map(str::parse))
                && let Some(gpu) = gpus.iter_mut().find(|gpu| gpu.uuid == uuid)
            {
                gpu.processes.push(pid);
            }
        }
    }
    Ok(gpus)
}

/// Parses `--query-gpu=index,uuid,name,memory.total,memory.used,driver_version` rows.
fn parse_gpus(csv: &str) -> Result<Vec<Gpu>> {
    csv.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(number, line)| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let bad = || {
                Error::Input(format!(
                    "nvidia-smi line {}: {line:?} is not index, uuid, name, memory.total, memory.used, driver_version",
                    number + 1
                ))
            };
            let [index, uuid, name, total, used, driver] = fields.as_slice() else {
                return Err(bad());
            };
            // nvidia-smi writes `[N/A]` or `[Not Supported]` where a value
            // does not apply (MIG mode) and `[Unknown Error]`, `[GPU requires
            // reset]` and the like where the GPU is in trouble.
            let mut problem = None;
            let mut memory = |text: &str| -> Result<u64> {
                match text {
                    "[N/A]" | "[Not Supported]" => Ok(0),
                    state if state.starts_with('[') => {
                        problem = Some(state.trim_matches(['[', ']']).to_owned());
                        Ok(0)
                    }
                    number => number.parse().map_err(|_| bad()),
                }
            };
            let memory_total_mib = memory(total)?;
            let memory_used_mib = memory(used)?;
            Ok(Gpu {
                index: index.parse().map_err(|_| bad())?,
                uuid: (*uuid).to_owned(),
                name: (*name).to_owned(),
                memory_total_mib,
                memory_used_mib,
                driver: (*driver).to_owned(),
                processes: Vec::new(),
                problem,
            })
        })
        .collect()
}

/// GPUs held by this process until dropped.
#[derive(Debug)]
pub struct GpuLease {
    /// The GPUs, in index order.
    pub gpus: Vec<Gpu>,
    /// Open, locked lock files; closing them releases the locks.
    _locks: Vec<File>,
}

impl GpuLease {
    /// The value of `CUDA_VISIBLE_DEVICES` for the run: the GPUs' UUIDs, or
    /// empty for no GPU.
    pub fn cuda_visible_devices(&self) -> String {
        self.gpus
            .iter()
            .map(|gpu| gpu.uuid.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn lock_path(lock_dir: &Path, gpu: &Gpu) -> PathBuf {
    let safe: String = gpu
        .uuid
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    lock_dir.join(format!("gpu-{safe}.lock"))
}

/// Tries to lock `gpu`; `None` when another process holds it.
fn try_lock(lock_dir: &Path, gpu: &Gpu) -> Result<Option<File>> {
    let path = lock_path(lock_dir, gpu);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| {
            Error::Input(format!(
                "cannot open the GPU lock {}: {error}",
                path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => Err(Error::Input(format!(
            "cannot lock {}: {error}",
            path.display()
        ))),
    }
}

/// Leases the GPUs `request` asks for from the host's inventory (read by
/// `read_inventory`), locking each in `lock_dir`. Without `wait`, GPUs that
/// are busy or locked make it fail at once; with it, it looks again every
/// half second until they are free or the wait is over.
pub fn acquire(
    request: &GpuRequest,
    lock_dir: &Path,
    wait: Option<Duration>,
    read_inventory: &dyn Fn() -> Result<Vec<Gpu>>,
) -> Result<GpuLease> {
    if *request == GpuRequest::None {
        return Ok(GpuLease {
            gpus: Vec::new(),
            _locks: Vec::new(),
        });
    }
    std::fs::create_dir_all(lock_dir).map_err(|error| {
        Error::Input(format!(
            "cannot create the GPU lock directory {}: {error}",
            lock_dir.display()
        ))
    })?;
    let deadline = wait.map(|wait| Instant::now() + wait);
    loop {
        let gpus = read_inventory()?;
        let wanted: Vec<&Gpu> = match request {
            GpuRequest::None => Vec::new(),
            GpuRequest::All | GpuRequest::Auto => gpus.iter().collect(),
            GpuRequest::Count(count) => {
                if *count > gpus.len() {
                    return Err(crate::error::given(
                        "GPU request",
                        count,
                        format!(
                            "this host has {} GPU{}",
                            gpus.len(),
                            if gpus.len() == 1 { "" } else { "s" }
                        ),
                    ));
                }
                let mut free: Vec<&Gpu> = gpus.iter().filter(|gpu| gpu.is_free()).collect();
                free.sort_by_key(|gpu| (gpu.memory_used_mib, gpu.index));
                free
            }
            GpuRequest::List(indices) => {
                let mut chosen = Vec::new();
                for index in indices {
                    match gpus.iter().find(|gpu| gpu.index == *index) {
                        Some(gpu) => chosen.push(gpu),
                        None if gpus.is_empty() => {
                            return Err(crate::error::given(
                                "GPU request",
                                "",
                                format!(
                                    "GPU {index} was asked for, but nvidia-smi reports no GPU on this host; ask for none to train without one"
                                ),
                            ));
                        }
                        None => {
                            return Err(crate::error::given(
                                "GPU request",
                                "",
                                format!(
                                    "this host has no GPU {index} (it has {})",
                                    gpus.iter()
                                        .map(|gpu| gpu.index.to_string())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ));
                        }
                    }
                }
                chosen
            }
        };
        if gpus.is_empty() && *request == GpuRequest::Auto {
            return Ok(GpuLease {
                gpus: Vec::new(),
                _locks: Vec::new(),
            });
        }
        if gpus.is_empty() {
            return Err(crate::error::given(
                "GPU request",
                "",
                "nvidia-smi reports no GPU on this host; ask for none to train without one",
            ));
        }
        let needed = match request {
            GpuRequest::Count(count) => *count,
            _ => wanted.len(),
        };
        let mut held = Vec::new();
        let mut locks = Vec::new();
        for gpu in wanted {
            if held.len() == needed {
                break;
            }
            let explicitly_chosen = !matches!(request, GpuRequest::Count(_));
            if explicitly_chosen && !gpu.is_free() {
                continue;
            }
            if let Some(lock) = try_lock(lock_dir, gpu)? {
                held.push(gpu.clone());
                locks.push(lock);
            }
        }
        if held.len() == needed {
            held.sort_by_key(|gpu| gpu.index);
            return Ok(GpuLease {
                gpus: held,
                _locks: locks,
            });
        }
        drop(locks);
        let troubled: Vec<String> = gpus
            .iter()
            .filter_map(|gpu| {
                let problem = gpu.problem.as_ref()?;
                Some(format!("GPU {} reports {problem:?}", gpu.index))
            })
            .collect();
        let troubled = if troubled.is_empty() {
            String::new()
        } else {
            format!("; {}", troubled.join(", "))
        };
        match deadline {
            Some(deadline) if Instant::now() < deadline => std::thread::sleep(POLL),
            Some(_) => {
                return Err(Error::Input(format!(
                    "waited for {needed} free GPU{} and gave up: every other one is busy or locked by another job{troubled}",
                    if needed == 1 { "" } else { "s" }
                )));
            }
            None => {
                return Err(Error::Input(format!(
                    "{needed} free GPU{} needed, {} available now (the others are busy or locked by another job{troubled}); pass --wait-for-gpus to wait",
                    if needed == 1 { "" } else { "s" },
                    held.len()
                )));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gpus(busy: &[u32]) -> Vec<Gpu> {
        parse_gpus(
            "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 3, 550.54.15\n1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, 0, 550.54.15\n",
        )
        .unwrap()
        .into_iter()
        .map(|mut gpu| {
            if busy.contains(&gpu.index) {
                gpu.processes.push(4242);
            }
            gpu
        })
        .collect()
    }

    #[test]
    fn parses_requests_and_rows() {
        assert_eq!("2".parse::<GpuRequest>().unwrap(), GpuRequest::Count(2));
        assert_eq!("all".parse::<GpuRequest>().unwrap(), GpuRequest::All);
        assert_eq!("none".parse::<GpuRequest>().unwrap(), GpuRequest::None);
        assert_eq!(
            "0,3".parse::<GpuRequest>().unwrap(),
            GpuRequest::List(vec![0, 3])
        );
        assert!("two".parse::<GpuRequest>().is_err());
        let parsed = gpus(&[]);
        assert_eq!(parsed[1].uuid, "GPU-bbbb");
        assert_eq!(parsed[0].memory_total_mib, 81559);
        assert!(parse_gpus("0, GPU-x, name\n").is_err());
        assert!(parse_gpus("0, GPU-x, H100, lots, 0, 550\n").is_err());
        // MIG mode has no memory figures; a GPU in trouble says so.
        let odd = parse_gpus(
            "0, GPU-m, NVIDIA A100-SXM4-80GB, [N/A], [N/A], 550.54.15\n1, GPU-r, NVIDIA A100-SXM4-80GB, 81920, [GPU requires reset], 550.54.15\n",
        )
        .unwrap();
        assert!(odd[0].is_free() && odd[0].problem.is_none());
        assert!(!odd[1].is_free());
        assert_eq!(odd[1].problem.as_deref(), Some("GPU requires reset"));
    }

    #[test]
    fn leases_never_overlap_and_release_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let read = || Ok(gpus(&[]));
        let first = acquire(&GpuRequest::Count(1), dir.path(), None, &read).unwrap();
        let second = acquire(&GpuRequest::Count(1), dir.path(), None, &read).unwrap();
        assert_ne!(first.gpus[0].uuid, second.gpus[0].uuid);
        let error = acquire(&GpuRequest::Count(1), dir.path(), None, &read)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--wait-for-gpus"), "{error}");
        let too_many = acquire(&GpuRequest::Count(3), dir.path(), None, &read)
            .unwrap_err()
            .to_string();
        assert!(too_many.contains("this host has 2 GPUs"), "{too_many}");
        let missing = acquire(&GpuRequest::List(vec![0, 3]), dir.path(), None, &read)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("no GPU 3 (it has 0, 1)"), "{missing}");
        let none = || Ok(Vec::new());
        let on_a_cpu_host = acquire(&GpuRequest::List(vec![0, 3]), dir.path(), None, &none)
            .unwrap_err()
            .to_string();
        assert!(
            on_a_cpu_host.contains("nvidia-smi reports no GPU on this host"),
            "{on_a_cpu_host}"
        );
        drop(first);
        let third = acquire(&GpuRequest::Count(1), dir.path(), None, &read).unwrap();
        assert_eq!(third.cuda_visible_devices().split(',').count(), 1);
    }

    #[test]
    fn busy_gpus_are_skipped_and_a_waiting_job_starts_when_one_frees() {
        let dir = tempfile::tempdir().unwrap();
        let busy = || Ok(gpus(&[0]));
        let lease = acquire(&GpuRequest::Count(1), dir.path(), None, &busy).unwrap();
        assert_eq!(lease.gpus[0].index, 1, "GPU 0 runs another process");
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&released);
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(lease);
        });
        let waited = acquire(
            &GpuRequest::Count(1),
            dir.path(),
            Some(Duration::from_secs(60)),
            &busy,
        )
        .unwrap();
        assert_eq!(waited.gpus[0].index, 1);
        assert!(
            released.load(std::sync::atomic::Ordering::SeqCst),
            "the waiting job got the GPU only after the other released it"
        );
        holder.join().unwrap();
        let none = acquire(&GpuRequest::None, dir.path(), None, &busy).unwrap();
        assert_eq!(none.cuda_visible_devices(), "");
    }
}
