//! The JSON options a driver receives: the class's own options plus what kubelet adds.
//!
//! kubelet passes one JSON object of strings (`NewOptionsForDriver` in driver-call.go):
//! `kubernetes.io/fsType` (empty when the volume sets none), `kubernetes.io/readwrite`,
//! `kubernetes.io/pvOrVolumeName` on every call that takes options (getvolumename, attach,
//! waitforattach, isattached, mountdevice, mount, expandvolume, expandfs), and on `mount` only the
//! pod's identity (`kubernetes.io/pod.name`, `pod.namespace`, `pod.uid`,
//! `serviceAccount.name`), `kubernetes.io/mounterArgs.FsGroup` when the pod has an fsGroup, and
//! the secrets (`kubernetes.io/secret/KEY`, base64 of the value); `FlexVolumeSource.options` are
//! added last. Secrets are never printed or logged: [`Masker`] replaces them in arguments and in
//! whatever a driver echoes back.

use std::collections::BTreeMap;

use serde_json::Value;

use super::protocol::Call;

pub const FS_TYPE: &str = "kubernetes.io/fsType";
pub const READ_WRITE: &str = "kubernetes.io/readwrite";
pub const FS_GROUP: &str = "kubernetes.io/mounterArgs.FsGroup";
pub const PV_OR_VOLUME_NAME: &str = "kubernetes.io/pvOrVolumeName";
pub const POD_NAME: &str = "kubernetes.io/pod.name";
pub const POD_NAMESPACE: &str = "kubernetes.io/pod.namespace";
pub const POD_UID: &str = "kubernetes.io/pod.uid";
pub const SERVICE_ACCOUNT: &str = "kubernetes.io/serviceAccount.name";
pub const SECRET_PREFIX: &str = "kubernetes.io/secret/";

/// What is shown in place of a secret.
pub const MASK: &str = "***";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error(
        "class {class}: field {field}: options must be a map of strings, but {key:?} is {found}"
    )]
    NotAString {
        class: String,
        field: String,
        key: String,
        found: &'static str,
    },
    #[error("class {class}: field {field}: options must be a map of strings, found {found}")]
    NotAMap {
        class: String,
        field: String,
        found: &'static str,
    },
    #[error("class {class}: field {field}: key {key:?} is reserved: kubelet sets it")]
    Reserved {
        class: String,
        field: String,
        key: String,
    },
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Validates user options given as any JSON value (as read from YAML): a map of strings whose
/// keys do not claim kubelet's `kubernetes.io/` namespace.
pub fn user_options(
    class: &str,
    field: &str,
    v: &Value,
) -> Result<BTreeMap<String, String>, OptionsError> {
    let Value::Object(map) = v else {
        return Err(OptionsError::NotAMap {
            class: class.into(),
            field: field.into(),
            found: kind_of(v),
        });
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if k.starts_with("kubernetes.io/") {
            return Err(OptionsError::Reserved {
                class: class.into(),
                field: field.into(),
                key: k.clone(),
            });
        }
        let Value::String(s) = v else {
            return Err(OptionsError::NotAString {
                class: class.into(),
                field: field.into(),
                key: k.clone(),
                found: kind_of(v),
            });
        };
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}

/// The pod a volume is mounted for, as kubelet names it to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub service_account: String,
}

/// Everything that goes into a volume's options.
#[derive(Debug, Clone)]
pub struct VolumeOptions {
    pub user: BTreeMap<String, String>,
    pub fs_type: Option<String>,
    pub read_only: bool,
    pub fs_group: Option<u32>,
    pub volume_name: String,
    /// Secret name → value (raw; base64-encoded on the wire as kubelet does).
    pub secrets: BTreeMap<String, String>,
}

impl VolumeOptions {
    /// The options for `call` (the pod only matters to `mount`).
    pub fn for_call(&self, call: Call, pod: Option<&PodInfo>) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(FS_TYPE.into(), self.fs_type.clone().unwrap_or_default());
        m.insert(
            READ_WRITE.into(),
            if self.read_only { "ro" } else { "rw" }.into(),
        );
        m.insert(PV_OR_VOLUME_NAME.into(), self.volume_name.clone());
        if call == Call::Mount {
            if let Some(g) = self.fs_group {
                m.insert(FS_GROUP.into(), g.to_string());
            }
            if let Some(p) = pod {
                m.insert(POD_NAME.into(), p.name.clone());
                m.insert(POD_NAMESPACE.into(), p.namespace.clone());
                m.insert(POD_UID.into(), p.uid.clone());
                m.insert(SERVICE_ACCOUNT.into(), p.service_account.clone());
            }
            for (k, v) in &self.secrets {
                m.insert(format!("{SECRET_PREFIX}{k}"), base64(v.as_bytes()));
            }
        }
        // The volume source's own options come last and win, as in kubelet.
        m.extend(self.user.clone());
        m
    }

    /// Replaces this volume's secrets wherever they appear.
    pub fn masker(&self) -> Masker {
        let mut needles: Vec<String> = Vec::new();
        for v in self.secrets.values() {
            if !v.is_empty() {
                needles.push(v.clone());
                needles.push(base64(v.as_bytes()));
            }
        }
        // Longest first, so a secret containing another is masked whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Masker { needles }
    }
}

/// Hides secret values in text shown to a user.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    needles: Vec<String>,
}

impl Masker {
    pub fn mask(&self, text: &str) -> String {
        let mut s = text.to_string();
        for n in &self.needles {
            s = s.replace(n.as_str(), MASK);
        }
        // A JSON argument's secret keys are masked even when the value could not be found
        // textually (escaped characters).
        if let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(&s) {
            let mut changed = false;
            for (k, v) in m.iter_mut() {
                if k.starts_with(SECRET_PREFIX) && *v != Value::String(MASK.into()) {
                    *v = Value::String(MASK.into());
                    changed = true;
                }
            }
            if changed {
                return Value::Object(m).to_string();
            }
        }
        s
    }
}

/// Standard base64 with padding, as Go's `base64.StdEncoding` (what kubelet uses for secrets).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The options as the single JSON argument kubelet passes.
pub fn to_json(options: &BTreeMap<String, String>) -> String {
    serde_json::to_string(options).expect("a map of strings always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_go_std_encoding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"hunter2!"), "aHVudGVyMiE=");
    }

    #[test]
    fn options_that_are_not_a_map_of_strings_name_class_and_field() {
        let e = user_options(
            "flex-loop",
            "local.flexvolume.options",
            &serde_json::json!({"size": 5}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "class flex-loop: field local.flexvolume.options: options must be a map of strings, but \"size\" is a number"
        );
        let e = user_options("c", "f", &serde_json::json!(["a"])).unwrap_err();
        assert!(e.to_string().contains("found a list"), "{e}");
        let e = user_options(
            "c",
            "f",
            &serde_json::json!({"kubernetes.io/fsType": "xfs"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
    }

    fn vol() -> VolumeOptions {
        VolumeOptions {
            user: [("dir".to_string(), "/x".to_string())].into(),
            fs_type: Some("ext4".into()),
            read_only: false,
            fs_group: Some(1000),
            volume_name: "v1".into(),
            secrets: [("password".to_string(), "hunter2!".to_string())].into(),
        }
    }

    /// kubelet's own keys (driver-call.go), not the older design document's `pod.UID`/`fsGroup`.
    #[test]
    fn option_keys_are_kubelets() {
        assert_eq!(POD_UID, "kubernetes.io/pod.uid");
        assert_eq!(FS_GROUP, "kubernetes.io/mounterArgs.FsGroup");
        let mut o = vol();
        o.fs_type = None;
        let m = o.for_call(Call::GetVolumeName, None);
        assert_eq!(
            m[FS_TYPE], "",
            "kubelet always sends fsType, empty when unset"
        );
        assert_eq!(
            m.keys().cloned().collect::<Vec<_>>(),
            vec!["dir", FS_TYPE, PV_OR_VOLUME_NAME, READ_WRITE]
        );
    }

    #[test]
    fn secrets_and_pod_identity_go_only_to_mount() {
        let pod = PodInfo {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            service_account: "sa".into(),
        };
        let o = vol();
        let attach = o.for_call(Call::Attach, Some(&pod));
        assert!(
            !attach
                .keys()
                .any(|k| k.starts_with(SECRET_PREFIX) || k == POD_NAME || k == FS_GROUP)
        );
        assert_eq!(attach[PV_OR_VOLUME_NAME], "v1");
        assert_eq!(attach[READ_WRITE], "rw");
        let mount = o.for_call(Call::Mount, Some(&pod));
        assert_eq!(mount["kubernetes.io/secret/password"], "aHVudGVyMiE=");
        assert_eq!(mount[POD_UID], "u");
        assert_eq!(mount[FS_GROUP], "1000");
        assert!(!mount.contains_key("kubernetes.io/mountsDir"));
    }

    #[test]
    fn masker_hides_secret_values_raw_and_encoded() {
        let o = vol();
        let m = o.masker();
        let json = to_json(&o.for_call(Call::Mount, None));
        let masked = m.mask(&json);
        assert!(
            !masked.contains("aHVudGVyMiE=") && masked.contains(MASK),
            "{masked}"
        );
        assert_eq!(m.mask("login failed for hunter2!"), "login failed for ***");
    }
}
