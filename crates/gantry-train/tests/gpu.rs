//! GPU inventory from a fake `nvidia-smi`, and locks that die with their
//! holder: a job killed with SIGKILL leaves its GPUs free at once.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gantry_train::{GpuRequest, acquire, inventory_from};

/// A fake `nvidia-smi` answering both queries gantry makes, for two GPUs
/// with a process on the second.
fn fake_nvidia_smi(dir: &Path) -> PathBuf {
    let path = dir.join("nvidia-smi");
    std::fs::write(
        &path,
        r#"#!/bin/sh
case "$1" in
  --query-gpu=*)
    echo "0, GPU-11111111-aaaa, NVIDIA A100-SXM4-40GB, 40960, 2, 535.104.05"
    echo "1, GPU-22222222-bbbb, NVIDIA A100-SXM4-40GB, 40960, 30200, 535.104.05"
    ;;
  --query-compute-apps=*)
    echo "GPU-22222222-bbbb, 31337"
    ;;
  *) exit 1 ;;
esac
"#,
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).unwrap();
    path
}

#[test]
fn reads_the_inventory_and_its_processes_from_nvidia_smi() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_nvidia_smi(dir.path());
    let gpus = inventory_from(&program).unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0].name, "NVIDIA A100-SXM4-40GB");
    assert_eq!(gpus[0].driver, "535.104.05");
    assert!(gpus[0].is_free());
    assert_eq!(gpus[1].processes, vec![31337]);
    assert!(!gpus[1].is_free());
    let locks = dir.path().join("locks");
    let lease = acquire(&GpuRequest::Count(1), &locks, None, &|| {
        inventory_from(&program)
    })
    .unwrap();
    assert_eq!(lease.cuda_visible_devices(), "GPU-11111111-aaaa");
    let error = acquire(&GpuRequest::List(vec![1]), &locks, None, &|| {
        inventory_from(&program)
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("--wait-for-gpus"), "{error}");
    let missing = inventory_from(&dir.path().join("no-such-nvidia-smi")).unwrap();
    assert!(missing.is_empty(), "a host without nvidia-smi has no GPUs");
}

/// Not a test of its own: the process `a_killed_holder_frees_its_gpus_at_once`
/// starts and kills. It leases a GPU, says so, and sleeps.
#[test]
#[ignore = "started by a_killed_holder_frees_its_gpus_at_once"]
fn hold_a_gpu_until_killed() {
    let Some(dir) = std::env::var_os("GANTRY_TEST_GPU_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let program = dir.join("nvidia-smi");
    let _lease = acquire(&GpuRequest::Count(1), &dir.join("locks"), None, &|| {
        inventory_from(&program)
    })
    .unwrap();
    std::fs::write(dir.join("holding"), "yes").unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_holder_frees_its_gpus_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_nvidia_smi(dir.path());
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_a_gpu_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("GANTRY_TEST_GPU_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if dir.path().join("holding").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dir.path().join("holding").exists(),
        "the holder never leased its GPU"
    );
    let locks = dir.path().join("locks");
    let busy = acquire(&GpuRequest::Count(1), &locks, None, &|| {
        inventory_from(&program)
    });
    assert!(busy.is_err(), "the only free GPU is leased by the holder");
    holder.kill().unwrap(); // SIGKILL: no destructor, no cleanup
    holder.wait().unwrap();
    let lease = acquire(&GpuRequest::Count(1), &locks, None, &|| {
        inventory_from(&program)
    })
    .unwrap();
    assert_eq!(lease.gpus[0].index, 0);
}
