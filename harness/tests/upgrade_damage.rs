//! A class whose upgrade damages data must fail `integrity::upgrade`, naming the damage kind,
//! the file and the offset, the seed, the volume and the command that reproduces the verify.

mod common;

use common::{Env, fixtures, require_root, stderr, stdout, trial};

#[test]
fn upgrade_that_flips_one_byte_fails_with_corrupt_at_that_offset() {
    require_root();
    let env = Env::new();
    let classes = fixtures().join("upgrade/flip-byte.yaml");
    let out = env.run(&[
        "--classes",
        classes.to_str().unwrap(),
        "--exact",
        "flip-byte::integrity::upgrade",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let record = env.record();
    let (file, byte) = record
        .trim()
        .split_once(' ')
        .expect("the fixture recorded what it flipped");
    let byte: u64 = byte.parse().unwrap();
    let block = byte / 4096 * 4096;

    let result = env.result();
    let t = trial(&result, "flip-byte::integrity::upgrade");
    assert_eq!(t["status"], "failed");
    let details = &t["failure"]["details"];
    let damage = details["damage"].as_array().unwrap();
    assert_eq!(
        damage.len(),
        1,
        "one flipped byte is one damaged block: {damage:?}"
    );
    assert_eq!(damage[0]["kind"], "corrupt");
    assert_eq!(damage[0]["file"], file);
    assert_eq!(damage[0]["offset"], block);
    assert_eq!(damage[0]["expected_generation"], 1);
    let message = t["failure"]["message"].as_str().unwrap();
    for needle in [
        "corrupt",
        file,
        &format!("offset {block}"),
        "seed",
        "volume",
        "reproduce:",
        "verify --dir",
    ] {
        assert!(
            message.contains(needle),
            "failure message lacks {needle:?}: {message}"
        );
    }
    // The terminal shows the same.
    assert!(
        stdout(&out).contains(&format!("corrupt at {file} offset {block}")),
        "{}",
        stdout(&out)
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn upgrade_that_puts_back_an_older_copy_fails_with_stale() {
    require_root();
    let env = Env::new();
    let classes = fixtures().join("upgrade/put-back-older.yaml");
    let out = env.run(&["--classes", classes.to_str().unwrap(), "integrity::upgrade"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let file = env.record().trim().to_string();
    assert!(!file.is_empty(), "the fixture did not run");
    let result = env.result();
    let t = trial(&result, "put-back-older::integrity::upgrade");
    assert_eq!(t["status"], "failed");
    let details = &t["failure"]["details"];
    let damage = details["damage"].as_array().unwrap();
    assert!(!damage.is_empty());
    for d in damage {
        assert_eq!(d["kind"], "stale", "{d}");
        assert_eq!(d["file"], file.as_str(), "{d}");
        assert_eq!(d["expected_generation"], 2, "{d}");
        assert_eq!(d["found_generation"], 1, "{d}");
    }
    assert_eq!(
        details["when"],
        "verify after rewrite and upgrade-after-rewrite"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// --keep-on-failure leaves the damaged volume mounted and says where; `pvcheck cleanup` then removes it.
#[test]
fn keep_on_failure_keeps_the_volume_until_cleanup() {
    require_root();
    let env = Env::new();
    let classes = fixtures().join("upgrade/flip-byte.yaml");
    let out = env.run(&[
        "--classes",
        classes.to_str().unwrap(),
        "--keep-on-failure",
        "integrity::upgrade",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let result = env.result();
    let kept = result["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{result}");
    let left = env.leftovers();
    assert!(
        left.iter().any(|l| l.starts_with("mount ")),
        "the kept volume should stay mounted: {left:?}"
    );
    assert!(stderr(&out).contains("kept"), "{}", stderr(&out));
    let clean = std::process::Command::new(common::PVCHECK)
        .arg("cleanup")
        .arg("--state-dir")
        .arg(env.state.path())
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}
