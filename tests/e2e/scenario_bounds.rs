//! No unbounded input: a scenario past a cap (phases, name length, file size) is
//! refused with exit 2 naming the field and the cap, at once and in bounded memory (the
//! refused runs are given 512 MiB of address space); names with control characters are printed
//! escaped, never acted on by the terminal.

use std::os::unix::process::CommandExt;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::{assert_exit, output_within, run, sockcap, TempDir};

/// Address space a refused scenario's run is given: far less than reading a 1 GiB file
/// (or planning millions of phases) takes.
const ADDRESS_SPACE: u64 = 512 << 20;

/// `sockcap args` under [`ADDRESS_SPACE`]; it must end within 10 s (else it is killed).
fn bounded_run(args: &[&str]) -> (Output, Duration) {
    let mut command = sockcap();
    command.args(args);
    // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| rlimit::Resource::AS.set(ADDRESS_SPACE, ADDRESS_SPACE));
    }
    let started = Instant::now();
    let out = output_within(&mut command, Duration::from_secs(10));
    (out, started.elapsed())
}

fn refused(dir: &TempDir, name: &str, text: &str) -> String {
    let file = dir.file(name, text);
    let (out, _) = bounded_run(&["run", file.to_str().unwrap(), "--quiet"]);
    assert_exit(&out, 2);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const HEAD: &str = "name = \"bounds\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n";

#[test]
fn too_many_phases_are_refused_naming_the_cap() {
    let dir = TempDir::new("bounds-phases");
    // 40,000 phases: under the 1 MiB file cap, forty times the phase cap.
    let text = HEAD.to_string() + &"[[phase]]\nsleep = \"1s\"\n".repeat(40_000);
    assert!(text.len() < 1 << 20);
    let stderr = refused(&dir, "phases.toml", &text);
    assert!(stderr.contains("field `phase`: 40,000 [[phase]]s, more than the 1,000 sockcap accepts"), "{stderr}");
    // `preflight` reads the scenario the same way.
    let (out, _) = bounded_run(&["preflight", dir.path("phases.toml").to_str().unwrap()]);
    assert_exit(&out, 2);
}

#[test]
fn long_names_and_strings_are_refused_naming_the_field() {
    let dir = TempDir::new("bounds-names");
    let long = "n".repeat(201);
    let stderr = refused(&dir, "name.toml", &HEAD.replace("\"bounds\"", &format!("\"{long}\"")));
    assert!(stderr.contains("field `name`: the name is 201 characters, more than the 200"), "{stderr}");
    let text = format!("{HEAD}[[phase]]\nname = \"{}\"\nsleep = \"1s\"\n", "p".repeat(100_000));
    let stderr = refused(&dir, "phase-name.toml", &text);
    assert!(stderr.contains("field `phase[0].name`") && stderr.contains("100,000 characters"), "{stderr}");
    let mqtt = format!(
        "name = \"m\"\ntarget = \"127.0.0.1:1883\"\nprotocol = \"mqtt\"\n[mqtt]\npassword = \"{}\"\n\
         [[phase]]\nsleep = \"1s\"\n",
        "x".repeat(70_000)
    );
    let stderr = refused(&dir, "password.toml", &mqtt);
    assert!(stderr.contains("field `mqtt.password`") && stderr.contains("65,535"), "{stderr}");
}

#[test]
fn a_huge_scenario_file_is_refused_before_it_is_read() {
    let dir = TempDir::new("bounds-size");
    // 4 GiB, sparse: no disk used; reading it whole would need 4 GiB of memory.
    let huge = dir.path("huge.toml");
    std::fs::File::create(&huge).unwrap().set_len(4 << 30).unwrap();
    let (out, took) = bounded_run(&["run", huge.to_str().unwrap(), "--quiet"]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the scenario file is 4,294,967,296 bytes, more than the 1,048,576 bytes"), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // A file with no size to check (a character device) is read up to the cap only.
    let (out, _) = bounded_run(&["run", "/dev/zero", "--quiet"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than the 1,048,576 bytes"));
}

/// A name made to clear the screen and fake a verdict is printed escaped in the report,
/// and a value quoted in an error is escaped too.
#[test]
fn names_with_control_characters_are_printed_escaped() {
    let dir = TempDir::new("bounds-escape");
    let text = "name = \"evil\\u001b[2J\\u0007\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\
                [[phase]]\nname = \"ramp\\nPASSED: all fine\\r\"\nconnect = { count = 2, rate = 100 }\n";
    let file = dir.file("escape.toml", text);
    let out = run(&["run", file.to_str().unwrap(), "--quiet"]);
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('\u{1b}') && !stdout.contains('\u{7}') && !stdout.contains('\r'), "{stdout:?}");
    assert!(stdout.contains("evil\\u{1b}[2J\\u{7}"), "{stdout}");
    assert!(stdout.contains("ramp\\nPASSED: all fine\\r"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("PASSED: all fine")), "{stdout}");
    let stderr = refused(&dir, "bad.toml", &HEAD.replace("\"tcp\"", "\"tc\\u001b]0;owned\\u0007p\""));
    assert!(!stderr.contains('\u{1b}') && stderr.contains("`tc\\u{1b}]0;owned\\u{7}p` is not a protocol"), "{stderr}");
}
