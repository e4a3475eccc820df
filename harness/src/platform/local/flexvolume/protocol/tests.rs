//! kubelet's reading of a reply, call by call: every call × status × exit code × output shape.
//! The expected verdicts are those of `DriverCall.Run` + `handleCmdResponse` (driver-call.go).

use std::time::Duration;

use super::*;
use crate::platform::local::flexvolume::call::{Captured, Exit, Output};

fn cap(s: &str) -> Captured {
    Captured {
        bytes: s.as_bytes().to_vec(),
        total: s.len() as u64,
    }
}

/// An output whose streams were read in the order given.
fn out(exit: Exit, chunks: &[(bool, &str)]) -> Output {
    let mut o = String::new();
    let mut e = String::new();
    let mut c = String::new();
    for (is_err, text) in chunks {
        if *is_err {
            e.push_str(text)
        } else {
            o.push_str(text)
        }
        c.push_str(text);
    }
    Output {
        exit,
        stdout: cap(&o),
        stderr: cap(&e),
        combined: cap(&c),
        elapsed: Duration::from_millis(10),
        left_process: false,
    }
}

fn classify_of(call: Call, exit: Exit, chunks: &[(bool, &str)]) -> Classified {
    classify(call, &out(exit, chunks), Duration::from_secs(120))
}

/// What kind of verdict, for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Success,
    NotSupported,
    Failed,
    DriverBug,
    NotJson,
    Type,
    NotObject,
}

fn kind(v: &Verdict) -> Kind {
    match v {
        Verdict::Success(_) => Kind::Success,
        Verdict::NotSupported(_) => Kind::NotSupported,
        Verdict::Failed(_) => Kind::Failed,
        Verdict::Breach(Breach::DriverBug { .. }) => Kind::DriverBug,
        Verdict::Breach(Breach::NotJson { .. }) => Kind::NotJson,
        Verdict::Breach(Breach::FieldType { .. }) => Kind::Type,
        Verdict::Breach(Breach::NotAnObject { .. }) => Kind::NotObject,
        Verdict::Breach(b) => panic!("unexpected breach {b}"),
    }
}

#[test]
fn every_call_status_exit_and_shape_is_read_as_kubelet_reads_it() {
    let exits = [Exit::Code(0), Exit::Code(1), Exit::Code(2), Exit::Signal(9)];
    // (status JSON fragment, expected with exit 0, expected with a failed exit)
    let statuses: [(&str, Kind, Kind); 7] = [
        (r#""status":"Success""#, Kind::Success, Kind::DriverBug),
        (
            r#""status":"Not supported""#,
            Kind::NotSupported,
            Kind::NotSupported,
        ),
        (r#""status":"Failure""#, Kind::Failed, Kind::Failed),
        (r#""status":"OK""#, Kind::Failed, Kind::Failed),
        (r#""status":"success""#, Kind::Failed, Kind::Failed),
        (r#""status":null"#, Kind::Failed, Kind::Failed),
        (r#""message":"no status""#, Kind::Failed, Kind::Failed),
    ];
    for call in Call::ALL {
        for exit in exits {
            let failed_exit = exit != Exit::Code(0);
            for (status, ok_exit, bad_exit) in statuses {
                let want = if failed_exit { bad_exit } else { ok_exit };
                let body = format!("{{{status},\"message\":\"m\"}}");
                // Output shapes: on stdout; with a trailing newline and leading blanks; the
                // reply on stderr (kubelet reads both); split across both streams in order.
                let shapes: Vec<Vec<(bool, String)>> = vec![
                    vec![(false, body.clone())],
                    vec![(false, format!("  \n{body}\n"))],
                    vec![(true, format!("{body}\n"))],
                    vec![
                        (false, body[..5].to_string()),
                        (true, body[5..].to_string()),
                    ],
                ];
                for shape in shapes {
                    let chunks: Vec<(bool, &str)> =
                        shape.iter().map(|(e, t)| (*e, t.as_str())).collect();
                    let c = classify_of(call, exit, &chunks);
                    assert_eq!(kind(&c.verdict), want, "{call} {exit} {shape:?}");
                    let on_stderr = shape.iter().any(|(e, _)| *e);
                    let warned_stderr = c.notices.iter().any(|n| n.kind == "stderr");
                    if matches!(want, Kind::Success | Kind::NotSupported) {
                        assert_eq!(warned_stderr, on_stderr, "{call} {exit} {shape:?}");
                    }
                    let warned_exit = c.notices.iter().any(|n| n.kind == "exit");
                    assert_eq!(
                        warned_exit,
                        want == Kind::NotSupported && !failed_exit,
                        "only a Not supported that exits 0 gets the exit-code warning: {call} {exit}"
                    );
                }
                // Shapes kubelet cannot parse, whatever the status and exit code.
                for bad in [
                    String::new(),
                    format!("{body}{body}"),
                    format!("{body} trailing"),
                    body[..body.len() - 1].to_string(),
                    format!("log: starting\n{body}"),
                ] {
                    let c = classify_of(call, exit, &[(false, bad.as_str())]);
                    assert_eq!(kind(&c.verdict), Kind::NotJson, "{call} {exit} {bad:?}");
                }
                // A log line on stderr breaks a perfect stdout reply, and is named.
                let c = classify_of(
                    call,
                    exit,
                    &[(true, "debug: hello\n"), (false, body.as_str())],
                );
                assert_eq!(kind(&c.verdict), Kind::NotJson, "{call} {exit}");
                let Verdict::Breach(b) = &c.verdict else {
                    unreachable!()
                };
                assert!(b.to_string().contains("\"debug: hello\""), "{b}");
                assert!(b.to_string().contains("stderr"), "{b}");
            }
            for (shape, want) in [
                ("[1]", Kind::NotObject),
                ("\"Success\"", Kind::NotObject),
                ("42", Kind::NotObject),
                ("null", Kind::Failed),
            ] {
                let c = classify_of(call, exit, &[(false, shape)]);
                assert_eq!(kind(&c.verdict), want, "{call} {exit} {shape}");
            }
        }
    }
}

#[test]
fn a_field_of_the_wrong_type_fails_the_call_even_with_not_supported() {
    for (body, field) in [
        (r#"{"status":"Success","attached":"true"}"#, "attached"),
        (r#"{"status":"Not supported","device":7}"#, "device"),
        (r#"{"status":"Success","message":["a"]}"#, "message"),
        (
            r#"{"status":"Success","capabilities":{"attach":"no"}}"#,
            "capabilities.attach",
        ),
        (
            r#"{"status":"Success","capabilities":true}"#,
            "capabilities",
        ),
        (
            r#"{"status":"Success","volumeNewSize":1.5}"#,
            "volumeNewSize",
        ),
        (
            r#"{"status":"Success","volumeNewSize":"10"}"#,
            "volumeNewSize",
        ),
        (r#"{"status":1}"#, "status"),
    ] {
        let c = classify_of(Call::Init, Exit::Code(0), &[(false, body)]);
        match &c.verdict {
            Verdict::Breach(Breach::FieldType { field: f, .. }) => assert_eq!(f, field, "{body}"),
            v => panic!("{body}: {v:?}"),
        }
    }
}

#[test]
fn go_leniency_keys_match_case_insensitively_and_the_last_duplicate_wins() {
    let c = classify_of(
        Call::IsAttached,
        Exit::Code(0),
        &[(
            false,
            r#"{"Status":"Failure","STATUS":"Success","Attached":true}"#,
        )],
    );
    let Verdict::Success(r) = &c.verdict else {
        panic!("{c:?}")
    };
    assert!(r.attached);
    assert!(c.notices.iter().any(|n| n.kind == "case"), "{c:?}");
}

/// The documented `capabilities` and Go's own `Capabilities` are both exact: no warning.
#[test]
fn capabilities_in_either_spelling_is_no_smell() {
    for body in [
        r#"{"status":"Success","capabilities":{"attach":false}}"#,
        r#"{"status":"Success","Capabilities":{"attach":false}}"#,
    ] {
        let c = classify_of(Call::Init, Exit::Code(0), &[(false, body)]);
        let Verdict::Success(r) = &c.verdict else {
            panic!("{body}")
        };
        assert!(!r.capabilities.unwrap().attach, "{body}");
        assert!(c.notices.is_empty(), "{body}: {:?}", c.notices);
    }
}

#[test]
fn init_capabilities_take_kubelets_defaults_and_null_is_refused() {
    let c = classify_of(
        Call::Init,
        Exit::Code(0),
        &[(false, r#"{"status":"Success"}"#)],
    );
    let Verdict::Success(r) = &c.verdict else {
        panic!()
    };
    assert_eq!(r.capabilities, Some(Capabilities::default()));
    assert!(!Capabilities::default().supports_metrics);
    let c = classify_of(
        Call::Init,
        Exit::Code(0),
        &[(
            false,
            r#"{"status":"Success","capabilities":{"attach":false,"supportsMetrics":true}}"#,
        )],
    );
    let Verdict::Success(r) = &c.verdict else {
        panic!()
    };
    let caps = r.capabilities.unwrap();
    assert!(!caps.attach && caps.supports_metrics && caps.fs_group && caps.selinux_relabel);
    let c = classify_of(
        Call::Init,
        Exit::Code(0),
        &[(false, r#"{"status":"Success","capabilities":null}"#)],
    );
    assert_eq!(c.verdict, Verdict::Breach(Breach::NullCapabilities));
}

#[test]
fn isattached_success_without_attached_reads_as_not_attached() {
    let c = classify_of(
        Call::IsAttached,
        Exit::Code(0),
        &[(false, r#"{"status":"Success"}"#)],
    );
    let Verdict::Success(r) = &c.verdict else {
        panic!()
    };
    assert!(!r.attached, "Go's zero value");
}

#[test]
fn unknown_fields_of_a_success_are_warned_about_not_refused() {
    let c = classify_of(
        Call::Attach,
        Exit::Code(0),
        &[(
            false,
            r#"{"status":"Success","device":"/dev/x","devicePath":"/dev/x","capabilities":{"attach":true,"resize":true}}"#,
        )],
    );
    assert!(matches!(c.verdict, Verdict::Success(_)));
    let unknown: Vec<&str> = c
        .notices
        .iter()
        .filter(|n| n.kind == "unknown-field")
        .map(|n| n.text.as_str())
        .collect();
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert!(unknown[0].contains("devicePath") && unknown[1].contains("capabilities.resize"));
}

#[test]
fn slow_calls_and_lingering_processes_are_warnings() {
    let mut o = out(Exit::Code(0), &[(false, r#"{"status":"Success"}"#)]);
    o.elapsed = Duration::from_secs(70);
    o.left_process = true;
    let c = classify(Call::Mount, &o, Duration::from_secs(120));
    assert!(matches!(c.verdict, Verdict::Success(_)));
    let kinds: Vec<&str> = c.notices.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, vec!["slow", "left-process"]);
    o.elapsed = Duration::from_secs(59);
    o.left_process = false;
    assert!(
        classify(Call::Mount, &o, Duration::from_secs(120))
            .notices
            .is_empty()
    );
}

#[test]
fn oversized_output_is_refused_before_parsing() {
    let mut o = out(Exit::Code(0), &[(false, r#"{"status":"Success"}"#)]);
    o.combined.total = 10_000_000;
    assert!(matches!(
        classify(Call::Init, &o, Duration::from_secs(1)).verdict,
        Verdict::Breach(Breach::Oversized { .. })
    ));
}

#[test]
fn go_field_matching_folds_case_like_equalfold() {
    assert_eq!(match_field("STATUS", &REPLY_FIELDS), Some(("status", true)));
    assert_eq!(
        match_field("capabilities", &REPLY_FIELDS),
        Some(("capabilities", false))
    );
    assert_eq!(
        match_field("CAPABILITIES", &REPLY_FIELDS),
        Some(("capabilities", true))
    );
    assert_eq!(
        match_field("volumename", &REPLY_FIELDS),
        Some(("volumeName", true))
    );
    // KELVIN SIGN folds onto k, as in Go.
    assert_eq!(match_field("\u{212A}", &["k"]), Some(("k", true)));
    assert_eq!(match_field("devicePath", &REPLY_FIELDS), None);
}

mod properties {
    //! Invariants of kubelet's reading, over arbitrary replies: keys from kubelet's fields in any
    //! case plus unknown ones, values of any JSON type, any exit, split anywhere across the two
    //! streams.
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("status".to_string()),
            Just("Status".to_string()),
            Just("message".to_string()),
            Just("device".to_string()),
            Just("attached".to_string()),
            Just("capabilities".to_string()),
            Just("volumeName".to_string()),
            Just("volumeNewSize".to_string()),
            "[a-zA-Z]{1,8}",
        ]
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::json;
        prop_oneof![
            Just(json!("Success")),
            Just(json!("Not supported")),
            Just(json!("Failure")),
            Just(json!(null)),
            Just(json!(true)),
            Just(json!(false)),
            Just(json!({"attach": false})),
            Just(json!({"attach": "no"})),
            any::<i32>().prop_map(|n| json!(n)),
            Just(json!(1.5)),
            "[ -~]{0,12}".prop_map(|s| json!(s)),
        ]
    }

    fn exit() -> impl Strategy<Value = Exit> {
        prop_oneof![
            Just(Exit::Code(0)),
            (1..=255i32).prop_map(Exit::Code),
            Just(Exit::Signal(9)),
        ]
    }

    proptest! {
        #[test]
        fn reading_follows_kubelets_rules(
            entries in proptest::collection::vec((key(), value()), 0..6),
            exit in exit(),
            split in 0usize..200,
            call in proptest::sample::select(Call::ALL.to_vec()),
        ) {
            let body = format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let at = (0..=split.min(body.len())).rev().find(|i| body.is_char_boundary(*i)).unwrap_or(0);
            let (a, b) = body.split_at(at);
            let c = classify_of(call, exit, &[(false, a), (true, b)]);
            match &c.verdict {
                // Success needs exit 0 (else "driver bug").
                Verdict::Success(r) => {
                    prop_assert_eq!(exit, Exit::Code(0));
                    prop_assert_eq!(r.status(), Some(Status::Success));
                }
                Verdict::NotSupported(r) => prop_assert_eq!(r.status(), Some(Status::NotSupported)),
                Verdict::Failed(r) => prop_assert!(!matches!(r.status(), Some(Status::Success | Status::NotSupported))),
                Verdict::Breach(Breach::DriverBug { exit: e }) => prop_assert_ne!(*e, Exit::Code(0)),
                Verdict::Breach(Breach::FieldType { .. }) => {}
                Verdict::Breach(Breach::NullCapabilities) => prop_assert_eq!(call, Call::Init),
                Verdict::Breach(b) => prop_assert!(false, "{b} for a well-formed object {body}"),
            }
            // The exit-code warning is for an accepted "Not supported" that exits 0, only.
            let exit_notice = c.notices.iter().any(|n| n.kind == "exit");
            prop_assert_eq!(
                exit_notice,
                matches!(c.verdict, Verdict::NotSupported(_)) && exit == Exit::Code(0)
            );
            // Text on stderr that kubelet still parsed is always mentioned when accepted.
            if !b.is_empty() && matches!(c.verdict, Verdict::Success(_) | Verdict::NotSupported(_)) {
                prop_assert!(c.notices.iter().any(|n| n.kind == "stderr"));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_non_json_is_a_breach(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            exit in exit(),
        ) {
            let mut o = out(exit, &[]);
            o.stdout = Captured { bytes: bytes.clone(), total: bytes.len() as u64 };
            o.combined = o.stdout.clone();
            let c = classify(Call::Mount, &o, Duration::from_secs(1));
            if serde_json::from_slice::<serde_json::Value>(String::from_utf8_lossy(&bytes).as_bytes()).is_err() {
                let is_not_json = matches!(c.verdict, Verdict::Breach(Breach::NotJson { .. }));
                prop_assert!(is_not_json);
            }
        }
    }
}
