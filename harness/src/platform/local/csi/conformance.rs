//! The protocol checks behind the `<class>::csi::<call>` trials.
//!
//! Each check gets a driver of its own (a started command) or the class's running endpoint,
//! makes its call the way the CO does, repeats it where the CO repeats it (a sidecar or
//! kubelet restart: the same CreateVolume, publish on a published target, unpublish of an
//! unpublished one), asks for the error codes the spec requires (NotFound for an unknown
//! volume, AlreadyExists for the same name with an incompatible size, InvalidArgument for a
//! missing field), and always tears down what it made; afterwards nothing of it may be
//! mounted under its kubelet root.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use super::backend::{self, platform_error};
use super::call::Call;
use super::co::{Co, CsiVolume, Paths, Published, mounts_at};
use super::error::CsiError;
use super::proto;
use super::proto::controller_client::ControllerClient;
use super::proto::node_client::NodeClient;
use crate::config::ClassSpec;
use crate::config::csi::CsiSpec;
use crate::platform::local::backend::BackendCtx;
use crate::platform::{PlatformError, ProtocolOutcome};
use crate::registry::Resource;

/// A volume id no plugin has: for the NotFound checks.
pub const UNKNOWN_VOLUME: &str = "pvcheck-no-such-volume-4f1c9e";

/// A passed check's note, or why the call does not apply to this plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed(String),
    NotApplicable(String),
}

/// What one check made, torn down at the end whatever happened.
struct Made<'a> {
    co: &'a Co<'a>,
    volumes: RefCell<Vec<String>>,
    snapshots: RefCell<Vec<String>>,
    published: RefCell<Vec<Published>>,
}

impl Made<'_> {
    fn teardown(&self) -> Result<(), CsiError> {
        let mut first = None;
        for p in self.published.borrow_mut().drain(..) {
            if let Err(e) = self.co.unpublish(&p) {
                first.get_or_insert(e);
            }
        }
        for s in self.snapshots.borrow_mut().drain(..) {
            if let Err(e) = self.co.delete_snapshot(&s) {
                first.get_or_insert(e);
            }
        }
        for v in self.volumes.borrow_mut().drain(..) {
            if let Err(e) = self.co.delete_volume(&v) {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Made<'_> {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Everything a check needs.
pub struct Subject<'a> {
    pub co: Co<'a>,
    /// Prefix of the names of the volumes and snapshots the check creates.
    pub name: String,
    /// The kubelet root the check stages and publishes under.
    pub root: PathBuf,
    pub size: u64,
    /// Records a path before something is mounted there.
    pub record_mount: &'a dyn Fn(&Path) -> Result<(), PlatformError>,
}

/// The error code `result` must be; `what` says what was asked.
fn expect_code<T: std::fmt::Debug>(
    call: Call,
    result: Result<T, CsiError>,
    want: &str,
    what: &str,
) -> Result<(), CsiError> {
    match result {
        Ok(reply) => Err(CsiError::Protocol {
            call,
            what: format!("answered OK to {what}; the spec requires {want}"),
            request: what.to_string(),
            reply: format!("{reply:?}"),
        }),
        Err(CsiError::Status {
            code,
            message,
            request,
            ..
        }) if code != want => Err(CsiError::Protocol {
            call,
            what: format!("answered {code} to {what}; the spec requires {want}"),
            request,
            reply: message,
        }),
        Err(CsiError::Status { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn na(reason: impl Into<String>) -> Result<Verdict, CsiError> {
    Ok(Verdict::NotApplicable(reason.into()))
}

impl<'a> Subject<'a> {
    fn create(&self, made: &Made<'_>, suffix: &str) -> Result<CsiVolume, CsiError> {
        let v = self.co.create_volume(self.co.create_request(
            &format!("{}-{suffix}", self.name),
            self.size,
            None,
        ))?;
        made.volumes.borrow_mut().push(v.id.clone());
        Ok(v)
    }

    fn paths(&self, vol: &CsiVolume, pod: &str) -> Result<Paths, CsiError> {
        let p = Paths::new(&self.root, &vol.name, pod, self.co.spec.access_type);
        for path in [&p.staging, &p.target] {
            (self.record_mount)(path).map_err(|e| CsiError::Driver(e.to_string()))?;
        }
        Ok(p)
    }

    fn publish(&self, made: &Made<'_>, vol: &CsiVolume, pod: &str) -> Result<Published, CsiError> {
        let paths = self.paths(vol, pod)?;
        let p = self.co.publish(vol, &paths)?;
        made.published.borrow_mut().push(p.clone());
        Ok(p)
    }

    fn unpublish(&self, made: &Made<'_>, p: &Published) -> Result<(), CsiError> {
        made.published.borrow_mut().retain(|q| q.target != p.target);
        self.co.unpublish(p)
    }

    /// Nothing mounted anywhere under the check's kubelet root.
    fn nothing_left(&self, call: Call) -> Result<(), CsiError> {
        let left: Vec<String> = crate::sys::mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&self.root))
            .map(|m| m.display().to_string())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(CsiError::Kernel {
                call,
                what: format!("after teardown still mounted: {}", left.join(", ")),
            })
        }
    }
}

/// Runs the check for `call`.
pub fn check(call: Call, s: &Subject<'_>) -> Result<Verdict, CsiError> {
    let co = &s.co;
    let caps = &co.caps;
    let made = Made {
        co,
        volumes: RefCell::new(Vec::new()),
        snapshots: RefCell::new(Vec::new()),
        published: RefCell::new(Vec::new()),
    };
    let client = co.client;
    let verdict = match call {
        Call::Probe => {
            // Discovery already probed once; a CO probes again whenever it likes.
            let r = client.call(Call::Probe, proto::ProbeRequest {}, |ch, r| async move {
                proto::identity_client::IdentityClient::new(ch)
                    .probe(r)
                    .await
            })?;
            Verdict::Passed(format!("ready: {:?}", r.ready))
        }
        Call::GetPluginInfo => Verdict::Passed(format!(
            "plugin {} version {}",
            caps.name, caps.vendor_version
        )),
        Call::GetPluginCapabilities => Verdict::Passed(format!(
            "controller service {}, topology {}, expansion online {} offline {}",
            caps.controller_service,
            caps.accessibility_constraints,
            caps.online_expansion,
            caps.offline_expansion
        )),
        Call::ControllerGetCapabilities => {
            if !caps.controller_service {
                return na("the plugin has no CONTROLLER_SERVICE: no controller calls are made");
            }
            if !caps.create_delete_volume {
                return Err(CsiError::Driver(format!(
                    "plugin {} lacks CREATE_DELETE_VOLUME: nothing can provision its volumes",
                    caps.name
                )));
            }
            Verdict::Passed(format!(
                "create/delete {}, publish {}, expand {}, snapshots {}, clone {}",
                caps.create_delete_volume,
                caps.publish_unpublish,
                caps.controller_expand,
                caps.snapshots,
                caps.clone
            ))
        }
        Call::NodeGetCapabilities => Verdict::Passed(format!(
            "stage/unstage {}, stats {}, expand {}",
            caps.stage_unstage, caps.volume_stats, caps.node_expand
        )),
        Call::NodeGetInfo => Verdict::Passed(format!(
            "node_id {:?}, topology {:?}",
            caps.node_id, caps.topology
        )),
        Call::CreateVolume => {
            let req = co.create_request(&format!("{}-a", s.name), s.size, None);
            let v = co.create_volume(req.clone())?;
            made.volumes.borrow_mut().push(v.id.clone());
            // The provisioner retries after a restart: same name, same volume.
            let again = co.create_volume(req.clone())?;
            if again.id != v.id {
                made.volumes.borrow_mut().push(again.id.clone());
                return Err(client.violation(
                    Call::CreateVolume,
                    format!(
                        "the same CreateVolume again gave volume {}, the first gave {}: not idempotent (the first volume leaks)",
                        again.id, v.id
                    ),
                    &req,
                    &again.id,
                ));
            }
            let mut bigger = req.clone();
            let more = (v.capacity.max(s.size) * 2) as i64;
            bigger.capacity_range = Some(proto::CapacityRange {
                required_bytes: more,
                limit_bytes: more,
            });
            let r = client.call(Call::CreateVolume, bigger, |ch, r| async move {
                ControllerClient::new(ch).create_volume(r).await
            });
            if let Ok(resp) = &r
                && let Some(vv) = &resp.volume
                && vv.volume_id != v.id
            {
                made.volumes.borrow_mut().push(vv.volume_id.clone());
            }
            expect_code(
                Call::CreateVolume,
                r,
                "AlreadyExists",
                "CreateVolume with an existing name and an incompatible capacity",
            )?;
            let mut nameless = req.clone();
            nameless.name.clear();
            let r = client.call(Call::CreateVolume, nameless, |ch, r| async move {
                ControllerClient::new(ch).create_volume(r).await
            });
            if let Ok(resp) = &r
                && let Some(vv) = &resp.volume
            {
                made.volumes.borrow_mut().push(vv.volume_id.clone());
            }
            expect_code(
                Call::CreateVolume,
                r,
                "InvalidArgument",
                "CreateVolume without a name",
            )?;
            let mut nocaps = req.clone();
            nocaps.name = format!("{}-b", s.name);
            nocaps.volume_capabilities.clear();
            let r = client.call(Call::CreateVolume, nocaps, |ch, r| async move {
                ControllerClient::new(ch).create_volume(r).await
            });
            if let Ok(resp) = &r
                && let Some(vv) = &resp.volume
            {
                made.volumes.borrow_mut().push(vv.volume_id.clone());
            }
            expect_code(
                Call::CreateVolume,
                r,
                "InvalidArgument",
                "CreateVolume without volume_capabilities",
            )?;
            Verdict::Passed(format!(
                "volume {} of {} bytes (asked {}); the same request again: the same volume; AlreadyExists and InvalidArgument where required",
                v.id, v.capacity, s.size
            ))
        }
        Call::DeleteVolume => {
            let v = s.create(&made, "a")?;
            co.delete_volume(&v.id)?;
            made.volumes.borrow_mut().retain(|x| *x != v.id);
            co.delete_volume(&v.id)?;
            co.delete_volume(UNKNOWN_VOLUME)?;
            let r = client.call(
                Call::DeleteVolume,
                proto::DeleteVolumeRequest {
                    volume_id: String::new(),
                    secrets: Default::default(),
                },
                |ch, r| async move { ControllerClient::new(ch).delete_volume(r).await },
            );
            expect_code(
                Call::DeleteVolume,
                r,
                "InvalidArgument",
                "DeleteVolume without a volume_id",
            )?;
            Verdict::Passed(
                "delete, delete again and delete of an unknown id: OK; no id: InvalidArgument"
                    .into(),
            )
        }
        Call::ControllerPublishVolume | Call::ControllerUnpublishVolume => {
            if !caps.publish_unpublish {
                return na(
                    "the controller has no PUBLISH_UNPUBLISH_VOLUME: the attacher never calls it",
                );
            }
            let v = s.create(&made, "a")?;
            let req = co.controller_publish_request(&v);
            let ctx1 = co.controller_publish(req.clone())?;
            let note = if call == Call::ControllerPublishVolume {
                let ctx2 = co.controller_publish(req.clone())?;
                if ctx1 != ctx2 {
                    return Err(client.violation(
                        call,
                        "the same ControllerPublishVolume again gave another publish_context",
                        &req,
                        &ctx2,
                    ));
                }
                let mut unknown = req.clone();
                unknown.volume_id = UNKNOWN_VOLUME.into();
                let r = co.controller_publish(unknown);
                expect_code(
                    call,
                    r,
                    "NotFound",
                    "ControllerPublishVolume of an unknown volume id",
                )?;
                let mut nonode = req.clone();
                nonode.node_id.clear();
                let r = co.controller_publish(nonode);
                expect_code(
                    call,
                    r,
                    "InvalidArgument",
                    "ControllerPublishVolume without a node_id",
                )?;
                co.controller_unpublish(&v.id)?;
                "publish, publish again: the same context; unknown volume: NotFound; no node: InvalidArgument"
            } else {
                co.controller_unpublish(&v.id)?;
                co.controller_unpublish(&v.id)?;
                "unpublish, then unpublish of the unpublished volume: OK"
            };
            Verdict::Passed(note.into())
        }
        Call::NodeStageVolume | Call::NodeUnstageVolume => {
            if !caps.stage_unstage {
                return na("the node has no STAGE_UNSTAGE_VOLUME: kubelet never calls it");
            }
            let v = s.create(&made, "a")?;
            let paths = s.paths(&v, "stage")?;
            let ctx = if caps.publish_unpublish {
                co.controller_publish(co.controller_publish_request(&v))?
            } else {
                Default::default()
            };
            let req = co.stage_request(&v, &ctx, &paths.staging);
            co.node_stage(req.clone())?;
            let staged = Published {
                volume_id: v.id.clone(),
                publish_context: ctx.clone(),
                controller_published: caps.publish_unpublish,
                staging: Some(paths.staging.clone()),
                target: paths.target.clone(),
            };
            made.published.borrow_mut().push(staged.clone());
            let note = if call == Call::NodeStageVolume {
                co.node_stage(req.clone())?;
                if mounts_at(&paths.staging) > 1 {
                    return Err(CsiError::Kernel {
                        call,
                        what: format!(
                            "{} has {} mounts stacked: a repeated NodeStageVolume mounted again",
                            paths.staging.display(),
                            mounts_at(&paths.staging)
                        ),
                    });
                }
                let mut unknown = req.clone();
                unknown.volume_id = UNKNOWN_VOLUME.into();
                let r = client.call(call, unknown, |ch, r| async move {
                    NodeClient::new(ch).node_stage_volume(r).await
                });
                expect_code(
                    call,
                    r,
                    "NotFound",
                    "NodeStageVolume of an unknown volume id",
                )?;
                let mut nopath = req.clone();
                nopath.staging_target_path.clear();
                let r = client.call(call, nopath, |ch, r| async move {
                    NodeClient::new(ch).node_stage_volume(r).await
                });
                expect_code(
                    call,
                    r,
                    "InvalidArgument",
                    "NodeStageVolume without a staging_target_path",
                )?;
                "stage, stage again: OK, at most one mount; unknown volume: NotFound; no path: InvalidArgument"
            } else {
                co.node_unstage(&v.id, &paths.staging)?;
                co.node_unstage(&v.id, &paths.staging)?;
                "unstage, then unstage of the unstaged volume: OK, nothing mounted"
            };
            s.unpublish(&made, &staged)?;
            Verdict::Passed(note.into())
        }
        Call::NodePublishVolume => {
            let v = s.create(&made, "a")?;
            let p = s.publish(&made, &v, "pod1")?;
            let req = co.publish_request(&v, &p.publish_context, p.staging.as_deref(), &p.target);
            // kubelet publishes again after a restart: still exactly one mount.
            co.node_publish(req.clone())?;
            let mut nopath = req.clone();
            nopath.target_path.clear();
            let r = client.call(call, nopath, |ch, r| async move {
                NodeClient::new(ch).node_publish_volume(r).await
            });
            expect_code(
                call,
                r,
                "InvalidArgument",
                "NodePublishVolume without a target_path",
            )?;
            let mut nocap = req.clone();
            nocap.volume_capability = None;
            nocap.target_path = format!("{}-nocap", req.target_path);
            let r = client.call(call, nocap, |ch, r| async move {
                NodeClient::new(ch).node_publish_volume(r).await
            });
            expect_code(
                call,
                r,
                "InvalidArgument",
                "NodePublishVolume without a volume_capability",
            )?;
            s.unpublish(&made, &p)?;
            Verdict::Passed(format!(
                "{} mounted at the target, publish again: still one mount; missing fields: InvalidArgument",
                co.spec.access_type.as_str()
            ))
        }
        Call::NodeUnpublishVolume => {
            let v = s.create(&made, "a")?;
            let p = s.publish(&made, &v, "pod1")?;
            co.node_unpublish(&v.id, &p.target)?;
            co.node_unpublish(&v.id, &p.target)?;
            let r = co.node_unpublish(UNKNOWN_VOLUME, &p.target);
            expect_code(
                call,
                r,
                "NotFound",
                "NodeUnpublishVolume of an unknown volume id",
            )?;
            s.unpublish(&made, &p)?;
            Verdict::Passed(
                "unpublish, then unpublish of the unpublished target: OK, nothing mounted; unknown volume: NotFound"
                    .into(),
            )
        }
        Call::NodeGetVolumeStats => {
            if !caps.volume_stats {
                return na("the node has no GET_VOLUME_STATS: kubelet never calls it");
            }
            let v = s.create(&made, "a")?;
            let p = s.publish(&made, &v, "pod1")?;
            let st = co.stats(&v.id, &p.target)?;
            let bytes = proto::volume_usage::Unit::Bytes as i32;
            let usage = st.usage.iter().find(|u| u.unit == bytes);
            if co.spec.access_type == crate::config::csi::AccessType::Mount {
                match usage {
                    Some(u) if u.total > 0 && u.available >= 0 && u.used >= 0 => {}
                    _ => {
                        return Err(CsiError::Protocol {
                            call,
                            what:
                                "no BYTES usage with a total above 0 for a published mount volume"
                                    .into(),
                            request: format!(
                                "volume_id {:?} volume_path {}",
                                v.id,
                                p.target.display()
                            ),
                            reply: format!("{st:?}"),
                        });
                    }
                }
            }
            let r = co.stats(UNKNOWN_VOLUME, &p.target);
            expect_code(
                call,
                r,
                "NotFound",
                "NodeGetVolumeStats of an unknown volume id",
            )?;
            s.unpublish(&made, &p)?;
            Verdict::Passed(format!(
                "usage {:?}; unknown volume: NotFound",
                usage.map(|u| (u.total, u.used, u.available))
            ))
        }
        Call::ControllerExpandVolume | Call::NodeExpandVolume => {
            let has = if call == Call::ControllerExpandVolume {
                caps.controller_expand
            } else {
                caps.node_expand
            };
            if !has {
                return na(format!(
                    "the {} has no EXPAND_VOLUME capability: the resizer and kubelet never call it",
                    if call == Call::ControllerExpandVolume {
                        "controller"
                    } else {
                        "node"
                    }
                ));
            }
            let v = s.create(&made, "a")?;
            let p = if caps.online_expansion || !caps.offline_expansion {
                Some(s.publish(&made, &v, "pod1")?)
            } else {
                None
            };
            let new = (v.capacity.max(s.size)) * 2;
            let cap = co.expand(&v.id, new, p.as_ref())?;
            if call == Call::NodeExpandVolume
                && let Some(p) = &p
            {
                let req = proto::NodeExpandVolumeRequest {
                    volume_id: UNKNOWN_VOLUME.into(),
                    volume_path: p.target.display().to_string(),
                    capacity_range: Some(proto::CapacityRange {
                        required_bytes: new as i64,
                        limit_bytes: 0,
                    }),
                    staging_target_path: String::new(),
                    volume_capability: Some(co.capability()),
                    secrets: Default::default(),
                };
                let r = client.call(call, req, |ch, r| async move {
                    NodeClient::new(ch).node_expand_volume(r).await
                });
                expect_code(
                    call,
                    r,
                    "NotFound",
                    "NodeExpandVolume of an unknown volume id",
                )?;
            }
            if let Some(p) = &p {
                s.unpublish(&made, p)?;
            }
            Verdict::Passed(format!(
                "{} → {cap} bytes ({})",
                v.capacity.max(s.size),
                if p.is_some() { "online" } else { "offline" }
            ))
        }
        Call::CreateSnapshot | Call::DeleteSnapshot => {
            if !caps.snapshots {
                return na(
                    "the controller has no CREATE_DELETE_SNAPSHOT: the snapshotter never calls it",
                );
            }
            let v = s.create(&made, "a")?;
            let name = format!("{}-snap", s.name);
            let id = co.create_snapshot(&v.id, &name)?;
            made.snapshots.borrow_mut().push(id.clone());
            let note = if call == Call::CreateSnapshot {
                let again = co.create_snapshot(&v.id, &name)?;
                if again != id {
                    made.snapshots.borrow_mut().push(again.clone());
                    return Err(CsiError::Protocol {
                        call,
                        what: format!(
                            "the same CreateSnapshot again gave snapshot {again}, the first gave {id}: not idempotent"
                        ),
                        request: name.clone(),
                        reply: again,
                    });
                }
                let other = s.create(&made, "b")?;
                let r = client.call(
                    call,
                    co.snapshot_request(&other.id, &name),
                    |ch, r| async move { ControllerClient::new(ch).create_snapshot(r).await },
                );
                if let Ok(resp) = &r
                    && let Some(sn) = &resp.snapshot
                    && sn.snapshot_id != id
                {
                    made.snapshots.borrow_mut().push(sn.snapshot_id.clone());
                }
                expect_code(
                    call,
                    r,
                    "AlreadyExists",
                    "CreateSnapshot with an existing name of another volume",
                )?;
                let r = client.call(call, co.snapshot_request(&v.id, ""), |ch, r| async move {
                    ControllerClient::new(ch).create_snapshot(r).await
                });
                expect_code(call, r, "InvalidArgument", "CreateSnapshot without a name")?;
                "snapshot ready; the same request again: the same snapshot; another source: AlreadyExists; no name: InvalidArgument"
            } else {
                co.delete_snapshot(&id)?;
                made.snapshots.borrow_mut().retain(|x| *x != id);
                co.delete_snapshot(&id)?;
                co.delete_snapshot("pvcheck-no-such-snapshot")?;
                let r = client.call(
                    call,
                    proto::DeleteSnapshotRequest {
                        snapshot_id: String::new(),
                        secrets: Default::default(),
                    },
                    |ch, r| async move { ControllerClient::new(ch).delete_snapshot(r).await },
                );
                expect_code(
                    call,
                    r,
                    "InvalidArgument",
                    "DeleteSnapshot without a snapshot_id",
                )?;
                "delete, delete again and delete of an unknown id: OK; no id: InvalidArgument"
            };
            Verdict::Passed(note.into())
        }
    };
    made.teardown()?;
    drop(made);
    s.nothing_left(call)?;
    Ok(verdict)
}

/// One `csi::<call>` check on a driver of its own (or the class's endpoint), with a kubelet
/// root under a scratch volume directory; everything removed afterwards.
pub fn protocol_check(
    class: &ClassSpec,
    spec: &CsiSpec,
    ctx: &BackendCtx,
    check_name: &str,
) -> Result<ProtocolOutcome, PlatformError> {
    let call = Call::from_name(check_name)
        .ok_or_else(|| PlatformError::Unsupported(format!("no CSI call {check_name:?}")))?;
    let origin = backend::origin(class);
    let (driver, state_dir) = backend::driver_for(class, spec, ctx)?;
    let result = (|| {
        let co = Co::discover(&driver.client, spec)
            .map_err(|e| platform_error(class.name(), &origin, e))?;
        let record = |p: &Path| -> Result<(), PlatformError> {
            ctx.record(Resource::Mount {
                path: p.to_path_buf(),
            })
            .map(|_| ())
        };
        let subject = Subject {
            co,
            name: ctx.volume.clone(),
            root: ctx.work_dir.join("kubelet"),
            size: 64 << 20,
            record_mount: &record,
        };
        match check(call, &subject) {
            Ok(Verdict::Passed(note)) => Ok(ProtocolOutcome::Passed(note)),
            Ok(Verdict::NotApplicable(r)) => Ok(ProtocolOutcome::NotApplicable(r)),
            Err(e) => Err(platform_error(class.name(), &origin, e)),
        }
    })();
    driver.stop();
    drop(driver);
    if let Some(d) = state_dir {
        crate::sys::remove_resource(&Resource::Dir { path: d }).map_err(PlatformError::Other)?;
    }
    result
}
