//! An upgrade command that fails, or whose `ready` never succeeds, fails `integrity::upgrade`
//! with one clear message (the command, its status, its stderr or the limit) and leaves nothing.

mod common;

use common::{Env, assert_exit, failure_message};

fn class(env: &Env, upgrade: &str, timeouts: &str) -> String {
    env.dir_class(
        "up",
        &format!("    upgrade: {upgrade}\n    timeouts: {timeouts}"),
    )
}

#[test]
fn failing_upgrade_command_fails_the_trial_with_its_stderr() {
    let env = Env::new();
    let f = class(
        &env,
        r#"{ command: "echo driver swap failed >&2; exit 3" }"#,
        "{ upgrade: 30s }",
    );
    let out = env.run(&["--classes", &f, "--exact", "up::integrity::upgrade"]);
    assert_exit(&out, 1);
    let r = env.result();
    let msg = failure_message(&r, "up::integrity::upgrade");
    assert!(
        msg.contains("upgrade.command")
            && msg.contains("exit 3")
            && msg.contains("driver swap failed"),
        "{msg}"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn ready_that_never_succeeds_times_out_with_the_class_limit() {
    let env = Env::new();
    let f = class(
        &env,
        r#"{ command: "true", ready: "false" }"#,
        "{ upgrade: 1s }",
    );
    let start = std::time::Instant::now();
    let out = env.run(&["--classes", &f, "--exact", "up::integrity::upgrade"]);
    assert_exit(&out, 1);
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    let r = env.result();
    let msg = failure_message(&r, "up::integrity::upgrade");
    assert!(
        msg.contains("upgrade.ready") && msg.contains("did not finish within 1s"),
        "{msg}"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn hanging_upgrade_command_is_killed_at_the_limit() {
    let env = Env::new();
    let f = class(&env, r#"{ command: "sleep 600" }"#, "{ upgrade: 1s }");
    let out = env.run(&["--classes", &f, "--exact", "up::integrity::upgrade"]);
    assert_exit(&out, 1);
    let r = env.result();
    let msg = failure_message(&r, "up::integrity::upgrade");
    assert!(
        msg.contains("sleep 600") && msg.contains("did not finish within 1s"),
        "{msg}"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// A healthy upgrade command (it sees the mounted volume and its environment) passes.
#[test]
fn harmless_upgrade_command_passes_and_sees_its_environment() {
    let env = Env::new();
    let f = class(
        &env,
        r#"{ command: 'test -d "$PVCHECK_VOLUME_DIR/pvcheck-data" && echo "$PVCHECK_CLASS $PVCHECK_UPGRADE_STEP" >> "$FIXTURE_RECORD"' }"#,
        "{ upgrade: 30s }",
    );
    let out = env.run(&["--classes", &f, "--exact", "up::integrity::upgrade"]);
    assert_exit(&out, 0);
    assert_eq!(env.record(), "up upgrade\nup upgrade-after-rewrite\n");
}
