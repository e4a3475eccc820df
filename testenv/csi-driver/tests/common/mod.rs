//! Shared test support: start the real driver binary on a temporary socket, talk to it with a
//! tonic client, and leave nothing mounted or attached (Drop guards).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use pvcheck_test_csi::csi::controller_client::ControllerClient;
use pvcheck_test_csi::csi::identity_client::IdentityClient;
use pvcheck_test_csi::csi::node_client::NodeClient;
use pvcheck_test_csi::csi::volume_capability::{
    AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
};
use pvcheck_test_csi::csi::{self, VolumeCapability};
use tonic::transport::{Channel, Endpoint, Uri};

pub const BIN: &str = env!("CARGO_BIN_EXE_pvcheck-test-csi");
pub const NODE: &str = "test-node";

/// Tests need root (mounts, loop devices). Without it they say so in one line and pass.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("{test}: skipped: needs root for mounts and loop devices");
        false
    }
}

/// FUSE tests also need /dev/fuse. Without root or the device they say so in one line and pass.
pub fn fuse_or_skip(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    if std::fs::metadata("/dev/fuse").is_err() {
        eprintln!("{test}: skipped: needs /dev/fuse for FUSE mounts");
        return false;
    }
    true
}

/// A test's driver: a fresh sandbox, the driver started in it with `args`, and a client of its
/// socket. Fields drop in the order a test's locals did: client, driver, sandbox.
pub struct Rig {
    pub c: Client,
    pub driver: DriverProcess,
    pub sb: Sandbox,
}

impl Rig {
    /// `None`, with the skip line, without root.
    pub async fn start(test: &str, args: &[&str]) -> Option<Rig> {
        if !root_or_skip(test) {
            return None;
        }
        Some(Self::started(args).await)
    }

    /// `None`, with the skip line, without root or /dev/fuse.
    pub async fn start_fuse(test: &str, args: &[&str]) -> Option<Rig> {
        if !fuse_or_skip(test) {
            return None;
        }
        Some(Self::started(args).await)
    }

    async fn started(args: &[&str]) -> Rig {
        let sb = Sandbox::new();
        let driver = DriverProcess::start(&sb, args);
        let c = driver.client().await;
        Rig { c, driver, sb }
    }
}

/// The code of a call that must fail.
pub fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => panic!("the call succeeded; it must fail"),
        Err(e) => e.code(),
    }
}

/// A temporary tree: statedir, socket, staging and target paths.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("pvcheck-test-csi-")
                .tempdir()
                .unwrap(),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn socket(&self) -> PathBuf {
        self.path("csi.sock")
    }
    pub fn statedir(&self) -> PathBuf {
        self.path("state")
    }
}

impl Drop for Sandbox {
    /// Whatever a failed test left: unmount everything under the sandbox, detach loop devices
    /// over its images. A passing test has already cleaned up (and asserted so).
    fn drop(&mut self) {
        let root = std::fs::canonicalize(self.dir.path())
            .unwrap_or_else(|_| self.dir.path().to_path_buf());
        for pid in fuse_daemons_under(&root) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for _ in 0..4 {
            for m in mounts_under(&root).into_iter().rev() {
                let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for dev in loops_over(&root) {
            let _ = pvcheck_test_csi::loopdev::detach(&dev);
        }
    }
}

/// Mount points at or under `root`.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    pvcheck_test_csi::mounts::mount_points()
        .into_iter()
        .filter(|m| m.starts_with(root))
        .collect()
}

/// Live `pvcheck-test-csi fuse-daemon` processes whose mount point is under `root`.
pub fn fuse_daemons_under(root: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let under = args.windows(2).any(|w| {
            w[0] == b"--mountpoint"
                && Path::new(std::str::from_utf8(w[1]).unwrap_or("")).starts_with(root)
        });
        if args.contains(&&b"fuse-daemon"[..]) && under && is_live(pid) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn is_live(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The filesystem type mounted at `path` (topmost), if any.
pub fn fs_type_at(path: &Path) -> Option<String> {
    pvcheck_test_csi::mounts::fs_type_at(path)
}

/// Loop devices whose backing file is under `root` (from sysfs).
pub fn loops_over(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file"))
            && Path::new(backing.trim()).starts_with(root)
        {
            out.push(PathBuf::from(format!("/dev/{name}")));
        }
    }
    out
}

/// Assert that nothing under the sandbox is mounted or attached, and no FUSE daemon serves it.
pub fn assert_clean(sb: &Sandbox) {
    let root = std::fs::canonicalize(sb.dir.path()).unwrap();
    assert_eq!(
        fuse_daemons_under(&root),
        Vec::<i32>::new(),
        "fuse-daemon processes left behind"
    );
    assert_eq!(
        mounts_under(&root),
        Vec::<PathBuf>::new(),
        "mounts left behind"
    );
    assert_eq!(
        loops_over(&root),
        Vec::<PathBuf>::new(),
        "loop devices left behind"
    );
}

/// The driver process; killed (SIGKILL) on drop if still running.
pub struct DriverProcess {
    pub child: Child,
    pub socket: PathBuf,
    pub stderr_path: PathBuf,
}

impl DriverProcess {
    pub fn start(sb: &Sandbox, extra: &[&str]) -> DriverProcess {
        Self::start_env(sb, extra, &[])
    }

    pub fn start_env(sb: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> DriverProcess {
        let socket = sb.socket();
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stderr_path = sb.path(&format!("driver-{n}.log"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg(format!("--endpoint=unix://{}", socket.display()))
            .arg(format!("--nodeid={NODE}"))
            .arg(format!("--statedir={}", sb.statedir().display()))
            .args(extra)
            .env_remove("PVCHECK_TEST_CSI_FAULTS")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut p = DriverProcess {
            child,
            socket,
            stderr_path,
        };
        p.wait_for_socket();
        p
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "driver exited with {status} before listening:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("driver did not listen within 20 s:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "driver did not stop within 10 s of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap: the node plugin dies without a word (a crash, a forced pod deletion).
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.socket).await
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Clone)]
pub struct Client {
    pub identity: IdentityClient<Channel>,
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
}

pub async fn channel(socket: &Path) -> Channel {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://csi.sock")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

impl Client {
    pub async fn connect(socket: &Path) -> Client {
        let ch = channel(socket).await;
        Client {
            identity: IdentityClient::new(ch.clone()),
            controller: ControllerClient::new(ch.clone()),
            node: NodeClient::new(ch),
        }
    }
}

pub fn mount_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

pub fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

pub fn create_req(name: &str, bytes: i64, cap: VolumeCapability) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.to_string(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        ..Default::default()
    }
}

pub fn stage_req(
    volume_id: &str,
    staging: &Path,
    cap: VolumeCapability,
) -> csi::NodeStageVolumeRequest {
    csi::NodeStageVolumeRequest {
        volume_id: volume_id.to_string(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

pub fn publish_req(
    volume_id: &str,
    staging: &Path,
    target: &Path,
    cap: VolumeCapability,
    readonly: bool,
) -> csi::NodePublishVolumeRequest {
    csi::NodePublishVolumeRequest {
        volume_id: volume_id.to_string(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap),
        readonly,
        ..Default::default()
    }
}

pub fn unpublish_req(volume_id: &str, target: &Path) -> csi::NodeUnpublishVolumeRequest {
    csi::NodeUnpublishVolumeRequest {
        volume_id: volume_id.to_string(),
        target_path: target.display().to_string(),
    }
}

pub fn unstage_req(volume_id: &str, staging: &Path) -> csi::NodeUnstageVolumeRequest {
    csi::NodeUnstageVolumeRequest {
        volume_id: volume_id.to_string(),
        staging_target_path: staging.display().to_string(),
    }
}

/// A request for a volume holding what `source` holds (a snapshot's or a volume's data).
pub fn create_from_req(
    name: &str,
    bytes: i64,
    cap: VolumeCapability,
    source: csi::volume_content_source::Type,
) -> csi::CreateVolumeRequest {
    let mut r = create_req(name, bytes, cap);
    r.volume_content_source = Some(csi::VolumeContentSource {
        r#type: Some(source),
    });
    r
}

/// The content source of a restore from snapshot `id`.
pub fn from_snapshot(id: &str) -> csi::volume_content_source::Type {
    csi::volume_content_source::Type::Snapshot(csi::volume_content_source::SnapshotSource {
        snapshot_id: id.to_string(),
    })
}

/// The content source of a clone of volume `id`.
pub fn from_volume(id: &str) -> csi::volume_content_source::Type {
    csi::volume_content_source::Type::Volume(csi::volume_content_source::VolumeSource {
        volume_id: id.to_string(),
    })
}

pub fn snapshot_req(source: &str, name: &str) -> csi::CreateSnapshotRequest {
    csi::CreateSnapshotRequest {
        source_volume_id: source.to_string(),
        name: name.to_string(),
        ..Default::default()
    }
}

pub fn expand_req(volume_id: &str, bytes: i64) -> csi::ControllerExpandVolumeRequest {
    csi::ControllerExpandVolumeRequest {
        volume_id: volume_id.to_string(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        ..Default::default()
    }
}

pub fn stats_req(volume_id: &str, path: &Path) -> csi::NodeGetVolumeStatsRequest {
    csi::NodeGetVolumeStatsRequest {
        volume_id: volume_id.to_string(),
        volume_path: path.display().to_string(),
        staging_target_path: String::new(),
    }
}

impl Client {
    pub async fn create(&mut self, name: &str, bytes: i64, cap: VolumeCapability) -> csi::Volume {
        self.create_with(create_req(name, bytes, cap)).await
    }

    pub async fn create_with(&mut self, req: csi::CreateVolumeRequest) -> csi::Volume {
        self.controller
            .create_volume(req)
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
    }

    /// A volume created, staged at `sb`'s `s` and published at its `t`.
    pub async fn create_published(
        &mut self,
        sb: &Sandbox,
        name: &str,
        bytes: i64,
        cap: VolumeCapability,
    ) -> (csi::Volume, PathBuf, PathBuf) {
        let vol = self.create(name, bytes, cap.clone()).await;
        let (s, t) = (sb.path("s"), sb.path("t"));
        self.stage_publish(&vol.volume_id, &s, &t, cap).await;
        (vol, s, t)
    }

    pub async fn snapshot(&mut self, source: &str, name: &str) -> csi::Snapshot {
        self.controller
            .create_snapshot(snapshot_req(source, name))
            .await
            .unwrap()
            .into_inner()
            .snapshot
            .unwrap()
    }

    pub async fn delete_snapshot(&mut self, id: &str) {
        self.controller
            .delete_snapshot(csi::DeleteSnapshotRequest {
                snapshot_id: id.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    pub async fn delete_volume(&mut self, id: &str) {
        self.controller
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: id.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    pub async fn expand(&mut self, id: &str, bytes: i64) -> csi::ControllerExpandVolumeResponse {
        self.controller
            .controller_expand_volume(expand_req(id, bytes))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn plugin_info(&mut self) -> csi::GetPluginInfoResponse {
        self.identity
            .get_plugin_info(csi::GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn publish(&mut self, id: &str, staging: &Path, target: &Path, readonly: bool) {
        self.node
            .node_publish_volume(publish_req(id, staging, target, mount_cap(), readonly))
            .await
            .unwrap();
    }

    pub async fn unpublish(&mut self, id: &str, target: &Path) {
        self.node
            .node_unpublish_volume(unpublish_req(id, target))
            .await
            .unwrap();
    }

    pub async fn stage(&mut self, id: &str, staging: &Path) {
        self.node
            .node_stage_volume(stage_req(id, staging, mount_cap()))
            .await
            .unwrap();
    }

    pub async fn unstage(&mut self, id: &str, staging: &Path) {
        self.node
            .node_unstage_volume(unstage_req(id, staging))
            .await
            .unwrap();
    }

    /// Stage at `staging` and publish at `target`.
    pub async fn stage_publish(
        &mut self,
        id: &str,
        staging: &Path,
        target: &Path,
        cap: VolumeCapability,
    ) {
        std::fs::create_dir_all(staging).unwrap();
        self.node
            .node_stage_volume(stage_req(id, staging, cap.clone()))
            .await
            .unwrap();
        self.node
            .node_publish_volume(publish_req(id, staging, target, cap, false))
            .await
            .unwrap();
    }

    pub async fn unpublish_unstage(&mut self, id: &str, staging: &Path, target: &Path) {
        self.unpublish(id, target).await;
        self.unstage(id, staging).await;
    }
}

/// Deterministic, varied bytes (a test's data must not be all one value).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

/// Write `data` to `path` at `offset` and fsync.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    f.write_all_at(data, offset).unwrap();
    f.sync_all().unwrap();
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}
