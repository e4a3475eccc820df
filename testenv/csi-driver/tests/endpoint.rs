//! Sockets: a stale socket is replaced, anything else refused; kubelet's registration socket
//! answers as node-driver-registrar does; both sockets go away on stop.

mod common;

use common::*;
use pvcheck_test_csi::pluginregistration::registration_client::RegistrationClient;
use pvcheck_test_csi::pluginregistration::{InfoRequest, RegistrationStatus};

#[test]
fn an_endpoint_that_is_not_a_socket_is_refused_and_left_alone() {
    let sb = Sandbox::new();
    std::fs::write(sb.socket(), b"precious").unwrap();
    let out = std::process::Command::new(BIN)
        .arg(format!("--endpoint=unix://{}", sb.socket().display()))
        .arg(format!("--statedir={}", sb.statedir().display()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read(sb.socket()).unwrap(), b"precious");
}

#[test]
fn a_bad_endpoint_flag_is_refused_in_one_line() {
    let out = std::process::Command::new(BIN)
        .arg("--endpoint=tcp://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--endpoint") && err.lines().count() == 1,
        "{err}"
    );
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_second_driver_on_the_statedir_is_refused() {
    if !root_or_skip("stale socket") {
        return;
    }
    let sb = Sandbox::new();
    drop(std::os::unix::net::UnixListener::bind(sb.socket()).unwrap());
    assert!(sb.socket().exists(), "a stale socket file");
    let mut driver = DriverProcess::start(&sb, &[]);
    let out = std::process::Command::new(BIN)
        .arg(format!(
            "--endpoint=unix://{}",
            sb.path("other.sock").display()
        ))
        .arg(format!("--statedir={}", sb.statedir().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another pvcheck-test-csi uses it"));
    assert_eq!(driver.stop(), 0);
}

#[tokio::test]
async fn registration_socket_answers_like_node_driver_registrar() {
    if !root_or_skip("registration") {
        return;
    }
    let sb = Sandbox::new();
    let reg_dir = sb.path("plugins_registry");
    let mut driver = DriverProcess::start(
        &sb,
        &[
            "--drivername=reg.csi.pvcheck.io",
            "--kubelet-registration-path=/var/lib/kubelet/plugins/reg.csi.pvcheck.io/csi.sock",
            &format!("--registration-dir={}", reg_dir.display()),
        ],
    );
    let reg_socket = reg_dir.join("reg.csi.pvcheck.io-reg.sock");
    let mut reg = RegistrationClient::new(channel(&reg_socket).await);
    let info = reg.get_info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.r#type, "CSIPlugin");
    assert_eq!(info.name, "reg.csi.pvcheck.io");
    assert_eq!(
        info.endpoint,
        "/var/lib/kubelet/plugins/reg.csi.pvcheck.io/csi.sock"
    );
    assert_eq!(info.supported_versions, vec!["1.0.0".to_string()]);
    reg.notify_registration_status(RegistrationStatus {
        plugin_registered: false,
        error: "bad version".into(),
    })
    .await
    .unwrap();
    reg.notify_registration_status(RegistrationStatus {
        plugin_registered: true,
        error: String::new(),
    })
    .await
    .unwrap();
    let log = driver.log();
    assert!(
        log.contains("kubelet refused reg.csi.pvcheck.io: bad version")
            && log.contains("kubelet registered"),
        "{log}"
    );
    assert_eq!(driver.stop(), 0);
    assert!(
        !reg_socket.exists() && !sb.socket().exists(),
        "both sockets are removed on stop"
    );
}

#[test]
fn registration_flags_come_in_pairs() {
    let out = std::process::Command::new(BIN)
        .args(["--endpoint=unix:///tmp/x.sock", "--registration-dir=/tmp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
