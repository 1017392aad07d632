//! A private moto server per test: start it, point the AWS SDK at it, drive its control endpoints.
//!
//! [`Moto::start`] spawns `tests/support/moto_server.py` (moto plus the few EC2 actions moto
//! lacks, see `tests/support/README.md`) on a free loopback port and waits for its `READY` line.
//! Each `Moto` is its own server with its own state, so tests can run in parallel processes
//! (cargo-nextest) or threads without sharing anything. Dropping it kills the server; should the
//! test process die instead, the server sees its stdin close and exits by itself.
//!
//! The control methods (`reset`, `set_block_public_access`, `put_in_recycle_bin`) panic on
//! failure: they are test set-up, and a failed set-up is a failed test.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// The account moto acts as when called with the static test credentials.
pub const ACCOUNT_ID: &str = "123456789012";

/// How long `start` waits for the server to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a control request may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// How many of the server's last stderr lines are kept for error messages.
const LOG_LINES: usize = 200;

const SCRIPT: &str = "tests/support/moto_server.py";
const PYTHON: &str = ".venv/bin/python";

/// A running moto server, owned by one test. Killed on drop.
pub struct Moto {
    child: Child,
    stdin: Option<ChildStdin>,
    endpoint: String,
    host_port: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Moto {
    /// Starts a fresh server on a free port of 127.0.0.1 and waits until it accepts requests.
    pub fn start() -> Result<Moto, String> {
        let root = repo_root()?;
        let python = root.join(PYTHON);
        if !python.is_file() {
            return Err(format!(
                "{} not found: run `bash scripts/setup.sh` in {} first (installs moto into .venv)",
                python.display(),
                root.display()
            ));
        }
        let mut child = Command::new(&python)
            .arg(root.join(SCRIPT))
            .current_dir(&root)
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} {SCRIPT}: {e}", python.display()))?;

        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES)));
        let stderr_reader = child.stderr.take().map(|stderr| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || forward_lines(stderr, &log))
        });
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                if let Some(Ok(first)) = lines.next() {
                    let _ = ready_tx.send(first);
                }
                drop(ready_tx);
                for line in lines.map_while(Result::ok) {
                    remember(&log, line);
                }
            });
        }
        let stdin = child.stdin.take();

        let started = Instant::now();
        let failure = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => match line.strip_prefix("READY ") {
                Some(endpoint) if endpoint.starts_with("http://127.0.0.1:") => {
                    let endpoint = endpoint.trim().to_string();
                    let host_port = endpoint.trim_start_matches("http://").to_string();
                    return Ok(Moto {
                        child,
                        stdin,
                        endpoint,
                        host_port,
                        log,
                    });
                }
                _ => format!("printed {line:?} instead of `READY http://127.0.0.1:PORT`"),
            },
            Err(RecvTimeoutError::Timeout) => {
                format!("not ready after {:?}", started.elapsed())
            }
            Err(RecvTimeoutError::Disconnected) => "exited before it was ready".to_string(),
        };
        // Failed: stop the child, collect what it said, and report it.
        drop(stdin);
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        if let Some(reader) = stderr_reader {
            let _ = reader.join();
        }
        Err(format!(
            "moto server ({SCRIPT}) {failure} ({status}); its stderr:\n{}",
            tail(&log)
        ))
    }

    /// `http://127.0.0.1:PORT`: the endpoint URL for every AWS client of this test.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The server's process id (to check that it is gone after drop).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SDK configuration for `region` that talks to this server only: its endpoint, static
    /// test credentials (moto's account [`ACCOUNT_ID`]), and nothing from the host's
    /// environment or profile files.
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .empty_test_environment()
            .endpoint_url(self.endpoint.clone())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .region(Region::new(region.to_string()))
            .load()
            .await
    }

    /// Environment for a child process (a Lambda binary) that should talk to this server.
    pub fn env_vars(&self, region: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", region.to_string()),
            ("AWS_DEFAULT_REGION", region.to_string()),
        ]
    }

    /// Wipes all of moto's state and the harness's (recycle bin, block public access).
    pub fn reset(&self) {
        self.control("/moto-api/reset", "application/json", "");
    }

    /// Sets what `GetImageBlockPublicAccessState` answers in `region`:
    /// `"unblocked"` (the default) or `"block-new-sharing"`.
    pub fn set_block_public_access(&self, region: &str, state: &str) {
        let path = format!(
            "/_harness/block-public-access?region={}&state={}",
            percent_encode(region),
            percent_encode(state)
        );
        self.control(&path, "application/json", "");
    }

    /// Makes `ListImagesInRecycleBin` in `region` list `image_id` (with `name`, no description).
    /// Only the listing: deregistering the image in moto is up to the test, as in AWS an image
    /// in the Recycle Bin is no longer returned by `DescribeImages`.
    /// Mark snapshots as encrypted with the given key ARNs (moto's images are never encrypted;
    /// the harness fills that gap). Panics with the server's answer on failure.
    pub fn encrypt_snapshots(&self, region: &str, snapshots: &[(&str, &str)]) {
        let map: serde_json::Map<String, serde_json::Value> = snapshots
            .iter()
            .map(|(s, k)| (s.to_string(), serde_json::Value::from(*k)))
            .collect();
        let body = serde_json::json!({ "region": region, "snapshots": map });
        self.control(
            "/_harness/encrypt-snapshots",
            "application/json",
            &body.to_string(),
        );
    }

    pub fn put_in_recycle_bin(&self, region: &str, image_id: &str, name: &str) {
        let body = serde_json::json!({
            "region": region,
            "images": [{ "ImageId": image_id, "Name": name, "Description": "" }],
        });
        self.control(
            "/_harness/recycle-bin",
            "application/json",
            &body.to_string(),
        );
    }

    /// `AssumeRole` of `role_arn` is refused from now on (AccessDenied), as when the role is
    /// missing in its account or does not trust the caller.
    pub fn deny_assume_role(&self, role_arn: &str) {
        let body = serde_json::json!({ "role_arn": role_arn });
        self.control(
            "/_harness/deny-assume-role",
            "application/json",
            &body.to_string(),
        );
    }

    /// Make `account` a member of the organization (under its root, or `parent`): moto's
    /// CreateAccount draws random ids, and the policies name fixed ones.
    pub fn add_org_member(&self, account: &str, parent: Option<&str>) {
        let body = serde_json::json!({ "account": account, "parent": parent });
        self.control(
            "/_harness/org-member",
            "application/json",
            &body.to_string(),
        );
    }

    /// What `GetEbsDefaultKmsKeyId` answers in `account` and `region`.
    pub fn set_ebs_default_key(&self, account: &str, region: &str, key_id: &str) {
        let body = serde_json::json!({ "account": account, "region": region, "key_id": key_id });
        self.control(
            "/_harness/ebs-default-key",
            "application/json",
            &body.to_string(),
        );
    }

    /// The cross-account `CopyImage` requests the server carried out (account, region,
    /// image_id, source_region, source_image_id, encrypted, kms_key_id, client_token).
    pub fn target_copies(&self) -> Vec<serde_json::Value> {
        let answer = http_request(
            "GET",
            &self.host_port,
            "/_harness/target-copies",
            "text/plain",
            "",
        )
        .unwrap_or_else(|e| panic!("GET /_harness/target-copies failed: {e}"));
        let doc: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("GET /_harness/target-copies answered {answer:?}: {e}"));
        doc["copies"].as_array().cloned().unwrap_or_default()
    }

    /// The `PutEvents` entries the server received, each with its `region`.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let answer = http_request("GET", &self.host_port, "/_harness/events", "text/plain", "")
            .unwrap_or_else(|e| panic!("GET /_harness/events failed: {e}"));
        let doc: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("GET /_harness/events answered {answer:?}: {e}"));
        doc["events"].as_array().cloned().unwrap_or_default()
    }

    /// POSTs to one of the server's own endpoints; panics unless it answers 2xx.
    fn control(&self, path: &str, content_type: &str, body: &str) -> String {
        match http_request("POST", &self.host_port, path, content_type, body) {
            Ok(answer) => answer,
            Err(e) => panic!(
                "moto control request POST {path} failed: {e}\nmoto stderr:\n{}",
                tail(&self.log)
            ),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The checkout's root: the first ancestor of this crate (or of this file) that holds the script.
fn repo_root() -> Result<PathBuf, String> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let this_file = Path::new(file!());
    let candidates = manifest_dir
        .ancestors()
        .chain(this_file.ancestors().filter(|p| p.is_absolute()));
    for dir in candidates {
        if dir.join(SCRIPT).is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    Err(format!(
        "cannot find {SCRIPT} above {} or {}",
        manifest_dir.display(),
        this_file.display()
    ))
}

/// Keeps the server's stderr (bounded) and passes it on to the test's captured output.
fn forward_lines(stream: impl Read, log: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        remember(log, line);
    }
}

fn remember(log: &Mutex<VecDeque<String>>, line: String) {
    eprintln!("[moto] {line}");
    if let Ok(mut log) = log.lock() {
        if log.len() == LOG_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }
}

fn tail(log: &Mutex<VecDeque<String>>) -> String {
    match log.lock() {
        Ok(log) if !log.is_empty() => log.iter().cloned().collect::<Vec<_>>().join("\n"),
        _ => "(nothing)".to_string(),
    }
}

/// A minimal HTTP/1.1 POST on loopback: enough for moto's control endpoints.
fn http_request(
    method: &str,
    host_port: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<String, String> {
    let mut stream =
        TcpStream::connect(host_port).map_err(|e| format!("connect {host_port}: {e}"))?;
    stream
        .set_read_timeout(Some(CONTROL_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CONTROL_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("receive: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, answer) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status_line = head.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(answer.to_string()),
        _ => Err(format!("{status_line}: {answer}")),
    }
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
