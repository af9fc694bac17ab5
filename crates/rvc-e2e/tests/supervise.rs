//! `make run`'s process supervision (scripts/lib/supervise.sh, issue 11 item 10): a process
//! that dies is restarted with a backoff and the console says so; one that keeps crashing makes
//! its supervisor give up (run-local.sh then stops everything); SIGTERM stops without restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rvc_e2e::repo_root;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn supervisor(dir: &std::path::Path, name: &str, cmd: &str) -> std::process::Child {
    std::fs::create_dir_all(dir.join("var/log")).unwrap();
    let lib = repo_root().join("scripts/lib/supervise.sh");
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; . '{}'; supervise {name} sh -c '{cmd}'",
            lib.display()
        ))
        .current_dir(dir)
        .env("RESTART_MAX", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Lines of stdout and stderr, as they come.
fn lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(l);
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, pat: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            let hit = l.contains(pat);
            seen.push(l);
            if hit {
                return;
            }
        }
    }
    panic!("no line with {pat:?} within {within:?}; saw {seen:#?}");
}

fn pid_in(line: &str) -> i32 {
    let rest = line.split("(pid ").nth(1).unwrap();
    rest.split(',').next().unwrap().parse().unwrap()
}

fn alive(pid: i32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_killed_process_is_restarted_and_sigterm_stops_it_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut sup = supervisor(dir.path(), "sleeper", "exec sleep 600");
    let rx = lines(&mut sup);
    let mut seen = Vec::new();
    wait_line(&rx, &mut seen, "started sleeper", Duration::from_secs(10));
    let first = pid_in(seen.last().unwrap());
    Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    wait_line(
        &rx,
        &mut seen,
        "restarting it in 1s",
        Duration::from_secs(10),
    );
    wait_line(&rx, &mut seen, "started sleeper", Duration::from_secs(10));
    let second = pid_in(seen.last().unwrap());
    assert_ne!(first, second);
    assert!(alive(second));

    Command::new("kill")
        .args(["-TERM", &sup.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = sup.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "supervisor did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        !alive(second),
        "the process was stopped with its supervisor"
    );
    assert!(
        !seen.iter().any(|l| l.contains("keeps crashing")),
        "{seen:#?}"
    );
}

#[test]
fn a_process_that_keeps_crashing_makes_its_supervisor_give_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut sup = supervisor(dir.path(), "crashy", "echo boom; exit 7");
    let rx = lines(&mut sup);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = sup.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "supervisor never gave up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(3));
    // Both pipes reach EOF once the supervisor is gone: read everything it said.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => seen.push(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(Instant::now() < deadline, "output never ended: {seen:#?}")
            }
        }
    }
    let restarts = seen
        .iter()
        .filter(|l| l.contains("restarting it in"))
        .count();
    assert_eq!(restarts, 2, "{seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("crashy exited (code 7) 3 times") && l.contains("keeps crashing")),
        "{seen:#?}"
    );
    let log = std::fs::read_to_string(dir.path().join("var/log/crashy.log")).unwrap();
    assert_eq!(log.matches("boom").count(), 3);
}
