//! The `kiln` client subcommands against a real server: `submit --follow` exits 0 on success and
//! non-zero on failure, prints plain lines when its output is not a terminal, and `jobs`,
//! `metrics`, `checkpoints --download` and `cancel` show what the API says.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;

use crate::common::{Server, synthetic_job, wait_for};
use crate::security::{WRITER, keyed_server};

/// Runs `kiln ARGS` against `server` with `key` in `KILN_API_KEY`, its output captured (so not a
/// terminal).
async fn kiln(server: &Server, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args).env("KILN_SERVER", &server.base).env("NO_COLOR", "1").env_remove("KILN_API_KEY");
    if let Some(key) = key {
        command.env("KILN_API_KEY", key);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run kiln")).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn job_file(dir: &std::path::Path, job: &Value) -> String {
    let path = dir.join(format!("job-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, serde_json::to_vec(job).unwrap()).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_follow_trains_to_success_in_plain_lines_and_the_other_commands_show_the_job() {
    let (server, _) = keyed_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), &synthetic_job(2));

    let refused = kiln(&server, None, &["submit", &file]).await;
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("401"), "{}", text(&refused.stderr));

    let out = kiln(&server, Some(WRITER), &["submit", &file, "--follow"]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains('\r') && !stdout.contains('\u{1b}'), "no redrawing in a log:\n{stdout}");
    let epoch_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epoch_lines.len(), 3, "one line per epoch, then the table's header:\n{stdout}");
    assert!(epoch_lines[0].starts_with("epoch 1/2  train_loss "), "{stdout}");
    assert!(epoch_lines[1].starts_with("epoch 2/2  train_loss ") && epoch_lines[1].contains("test_accuracy"));
    assert!(stdout.contains("status: running on cpu"), "{stdout}");
    assert!(stdout.trim_end().ends_with("succeeded"), "{stdout}");
    let id = stdout.split_whitespace().nth(1).unwrap().to_string();

    let jobs = text(&kiln(&server, Some(WRITER), &["jobs"]).await.stdout);
    assert!(
        jobs.lines().any(|l| l.starts_with(&id) && l.contains("succeeded") && l.contains("100%")),
        "{jobs}"
    );
    let metrics = text(&kiln(&server, Some(WRITER), &["metrics", &id]).await.stdout);
    assert_eq!(metrics.lines().count(), 3, "a header and two epochs:\n{metrics}");
    assert!(metrics.lines().next().unwrap().contains("test acc"), "{metrics}");
    assert!(metrics.lines().all(|l| l.chars().count() <= 80), "fits 80 columns:\n{metrics}");

    let saved = dir.path().join("saved");
    let out = kiln(&server, Some(WRITER), &["checkpoints", &id, "--download", saved.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = std::fs::read_dir(&saved).unwrap().next().unwrap().unwrap().path();
    assert_eq!(file.extension().unwrap(), "bpk", "burnpack, as the server names it: {}", file.display());
    let listed: Value = crate::common::get_json(
        &crate::common::authorized(WRITER),
        &server.url(&format!("/jobs/{id}/checkpoints")),
    )
    .await;
    let newest = listed.as_array().unwrap().last().unwrap();
    let digest = format!("{:x}", sha2::Sha256::digest(std::fs::read(&file).unwrap()));
    assert_eq!(digest, newest["sha256"].as_str().unwrap(), "the newest checkpoint, whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_follow_exits_non_zero_with_the_error_when_the_job_fails_or_is_cancelled() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let diverging = json!({
        "model": {"kind": "mlp_bn", "hidden": [512, 512, 512, 512], "batch_norm": false},
        "data": {"dataset": "synthetic_images", "train_size": 512, "test_size": 64},
        "training": {"epochs": 5, "batch_size": 64, "optimizer": {"kind": "sgd", "lr": 99.0, "momentum": 0.99}}
    });
    let out = kiln(&server, None, &["submit", &job_file(dir.path(), &diverging), "--follow"]).await;
    assert!(!out.status.success());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stderr.contains("failed: training diverged"), "stderr:\n{stderr}");
    assert!(stdout.trim_end().ends_with("failed"), "{stdout}");

    let mut long = synthetic_job(200);
    long["data"]["train_size"] = json!(5000);
    let file = job_file(dir.path(), &long);
    let follow = {
        let server_base = server.base.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_kiln"))
                .args(["submit", &file, "--follow", "--server", &server_base])
                .env_remove("KILN_API_KEY")
                .output()
                .unwrap()
        })
    };
    let c = &server.client;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let id = loop {
        let page: Value =
            c.get(server.url("/jobs?status=running")).send().await.unwrap().json().await.unwrap();
        if let Some(id) = page["jobs"][0]["id"].as_str() {
            break id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_for(c, &server.base, &id, Duration::from_secs(60), |j| j["progress"]["step"].as_u64() > Some(2))
        .await;
    let cancel = kiln(&server, None, &["cancel", &id]).await;
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    let said = text(&cancel.stdout);
    assert!(said.contains("cancel requested") && said.contains("--wait"), "{said}");
    // Asked again, waiting: it returns once the job has stopped, and says so.
    let waited = kiln(&server, None, &["cancel", "--wait", &id]).await;
    assert!(waited.status.success(), "{}", text(&waited.stderr));
    let waited = text(&waited.stdout);
    assert!(waited.trim_end().ends_with("cancelled"), "stopped, or already stopped: {waited}");
    let job = crate::common::get_json(c, &server.url(&format!("/jobs/{id}"))).await;
    assert_eq!(job["status"], "cancelled", "stopped when --wait returned");
    let out = follow.await.unwrap();
    assert!(!out.status.success(), "a cancelled job is not a success");
    assert!(text(&out.stdout).trim_end().ends_with("cancelled"), "{}", text(&out.stdout));
}

/// Runs `kiln ARGS` with its standard output a pipe whose reader is already gone, as in
/// `kiln ARGS | head -0`; its exit status and what it wrote to standard error.
async fn kiln_into_a_closed_pipe(server: &Server, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args).env("KILN_SERVER", &server.base).env_remove("KILN_API_KEY");
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("run kiln");
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("wait for kiln");
        (output.status, text(&output.stderr))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_reader_is_gone_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let server = Server::start().await;
    crate::common::submit(&server.client, &server.base, &synthetic_job(1)).await;
    for args in [&["new-api-key"][..], &["jobs"], &["openapi"]] {
        let (status, stderr) = kiln_into_a_closed_pipe(&server, args).await;
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "kiln {args:?}: {status:?}, stderr: {stderr}");
        assert!(!stderr.contains("panicked"), "kiln {args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_a_url_or_not_there_is_named_with_the_cause() {
    let server = Server::start().await;
    let mut not_a_url = server.base.clone();
    not_a_url.replace_range(..4, "nope");
    for (server_arg, expected) in [("not-a-url", "not a URL"), (not_a_url.as_str(), "http or https")] {
        let out = kiln(&server, None, &["jobs", "--server", server_arg]).await;
        let stderr = text(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("--server") && stderr.contains(expected), "{server_arg}: {stderr}");
    }
    // A port nothing listens on: the cause is said, not just "error sending request".
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = kiln(&server, None, &["jobs", "--server", &format!("http://127.0.0.1:{port}")]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot reach") && stderr.contains("onnection refused"), "{stderr}");
}
