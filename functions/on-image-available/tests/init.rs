//! The release binary's start, through a stand-in of the Lambda Runtime API: a policy that
//! does not validate is reported as the init error (every problem, with its JSON path), not a
//! bare exit; a good one makes no network call before the first event.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One request as received: request line, headers (lower-cased names), body.
struct Received {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn read_request(stream: &mut std::net::TcpStream) -> Received {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if k == "content-length" {
            len = v.parse().unwrap();
        }
        headers.push((k, v));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    Received {
        line: line.trim_end().to_string(),
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// Start the binary against a one-shot Runtime API; returns the first request it makes.
fn first_request(policy: &str) -> (Received, std::process::ExitStatus) {
    first_request_with("AMI_SHARE_POLICY", policy)
}

/// The same with the policy in `var` (`AMI_SHARE_POLICY`, or `AMI_SHARE_POLICY_FILE` naming a
/// file).
fn first_request_with(var: &str, policy: &str) -> (Received, std::process::ExitStatus) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_on-image-available"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "on-image-available")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/on-image-available",
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_REGION", "us-east-1")
        .env(var, policy)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // the process must call the Runtime API within 20 s (a process that exits, or waits on
    // something else, fails the test instead of hanging it)
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the function exited ({status}) without calling the Runtime API");
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no call to the Runtime API within 20 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let req = read_request(&mut stream);
    stream
        .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")
        .unwrap();
    drop(stream);
    let status = if req.line.starts_with("POST") {
        child.wait().unwrap()
    } else {
        // a good start: the runtime asks for the next event; stop it there
        child.kill().unwrap();
        child.wait().unwrap()
    };
    (req, status)
}

#[test]
fn a_bad_policy_is_reported_to_the_runtime_api_as_the_init_error() {
    let (req, status) = first_request(
        r#"{"rules":[{"name":"a","match":{"name":"x-*"},"share_with":{"accounts":["12"]}},{"name":"a","match":{}}],"colour":"blue"}"#,
    );
    assert_eq!(req.line, "POST /2018-06-01/runtime/init/error HTTP/1.1");
    let error_type = req
        .headers
        .iter()
        .find(|(k, _)| k == "lambda-runtime-function-error-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(error_type, Some("Runtime.ConfigError"));
    let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(body["errorType"], "ConfigError");
    let msg = body["errorMessage"].as_str().unwrap();
    for path in ["rules[0].share_with.accounts[0]", "rules[1].name", "colour"] {
        assert!(msg.contains(path), "{path} missing from: {msg}");
    }
    assert!(!status.success(), "the process exits after reporting");
}

#[test]
fn a_good_policy_starts_without_any_call_before_the_first_event() {
    let (req, _) = first_request(
        r#"{"rules":[{"name":"a","match":{"name":"x-*"},"share_with":{"accounts":["111122223333"]}}]}"#,
    );
    // the first request of the process is for the next event: no STS, no other call
    assert_eq!(req.line, "GET /2018-06-01/runtime/invocation/next HTTP/1.1");
}

#[test]
fn a_policy_file_is_read_at_start_too() {
    let path = std::env::temp_dir().join(format!("ami-share-init-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"rules":[{"name":"a","match":{"name":"x-*"},"share_with":{"accounts":["111122223333"]}}]}"#,
    )
    .unwrap();
    let (req, _) = first_request_with("AMI_SHARE_POLICY_FILE", path.to_str().unwrap());
    assert_eq!(req.line, "GET /2018-06-01/runtime/invocation/next HTTP/1.1");
    std::fs::write(&path, r#"{"rules":[{"name":"a b","match":{}}]}"#).unwrap();
    let (req, _) = first_request_with("AMI_SHARE_POLICY_FILE", path.to_str().unwrap());
    assert_eq!(req.line, "POST /2018-06-01/runtime/init/error HTTP/1.1");
    assert!(req.body.contains("rules[0].name"), "{}", req.body);
    std::fs::remove_file(&path).unwrap();
}
