//! The `tcplab model` and `tcplab diagram` commands as a user runs them: unknown scenarios are
//! refused with the list of valid ones, JSON lines parse, SVG and DOT come out.
//!
//! Left out on purpose: the content of the ladders, which core's snapshot tests pin down.

use std::process::Command;

use tcplab_core::model::Scenario;

fn tcplab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .args(args)
        .output()
        .expect("run tcplab")
}

#[test]
fn unknown_scenario_is_refused_with_the_list() {
    let out = tcplab(&["model", "graceful-goodbye"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("graceful-goodbye"), "{err}");
    for s in Scenario::ALL {
        assert!(err.contains(s.name()), "{err} lacks {s}");
    }
}

#[test]
fn json_lines_parse_and_have_the_keys() {
    for s in Scenario::ALL {
        let out = tcplab(&["model", s.name(), "--json"]);
        assert!(out.status.success(), "{s}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        assert!(text.lines().count() >= 4, "{s}: {text}");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect(line);
            for key in ["side", "from", "to", "t_us", "segment"] {
                assert!(v.get(key).is_some(), "{s}: {key} missing in {line}");
            }
            let side = v["side"].as_str().unwrap_or_default();
            assert!(side == "client" || side == "server", "{line}");
        }
    }
}

#[test]
fn ladder_svg_and_diagram_formats() {
    let out = tcplab(&["model", "client-close"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TIME_WAIT") && text.contains("FIN+ACK"),
        "{text}"
    );
    let out = tcplab(&["model", "lost-last-ack", "--svg"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<svg"));
    let out = tcplab(&["diagram", "--dot"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("digraph"));
    let out = tcplab(&["diagram", "--svg"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<svg"));
    let out = tcplab(&["diagram"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("FIN_WAIT2    -> TIME_WAIT"));
    let out = tcplab(&["diagram", "--dot", "--svg"]);
    assert!(!out.status.success());
}
