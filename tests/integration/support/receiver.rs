//! Real receivers on loopback for notification tests: an HTTP server that
//! records every request (and can answer 503, as a receiver that is down),
//! and an SMTP server (`aiosmtpd`, from PyPI) that keeps each mail in a
//! Maildir.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

use super::wait::wait_for;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The path.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Recorded {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP server recording every POST.
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    up: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts on a free loopback port.
    pub async fn start() -> Recorder {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let up = Arc::new(AtomicBool::new(true));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (r, u, dl) = (requests.clone(), up.clone(), delay_ms.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let (r, u, dl) = (r.clone(), u.clone(), dl.clone());
                async move {
                    if !u.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    r.lock().unwrap().push(Recorded {
                        path: uri.path().to_string(),
                        headers,
                        body,
                    });
                    // Recorded, then slow to answer: a sender killed now
                    // has delivered without knowing it.
                    let delay = dl.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    StatusCode::OK
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Recorder {
            addr,
            requests,
            up,
            delay_ms,
            task,
        }
    }

    /// `http://ADDR/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Answers 503 (false) or records (true) from now on.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Answers each request `delay` after recording it.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests came.
    pub async fn wait(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let what = format!("{n} requests to the receiver");
        wait_for(&what, timeout, || async {
            let all = self.requests();
            (all.len() >= n).then_some(all)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: got {:#?}", self.requests()))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `python3 -m aiosmtpd` on loopback, keeping mail in a Maildir.
pub struct Smtp {
    /// Its port.
    pub port: u16,
    maildir: PathBuf,
    child: Child,
}

impl Smtp {
    /// Starts it with its Maildir below `dir`.
    pub async fn start(dir: &Path) -> Smtp {
        let port = super::free_port();
        let maildir = dir.join("maildir");
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir);
        Self::spawn(cmd, port, maildir).await
    }

    /// Starts one (`smtp_auth.py`, on aiosmtpd) that wants STARTTLS with a
    /// certificate for 127.0.0.1 signed by a CA made here (`ca.crt` below
    /// `dir`, see [`Smtp::ca_file`]), then AUTH PLAIN or LOGIN as `user`
    /// with `password`; each mail gets `X-Authenticated-As` and `X-Tls`.
    pub async fn start_auth(dir: &Path, user: &str, password: &str) -> Smtp {
        let certs = dir.join("smtp-certs");
        std::fs::create_dir_all(&certs).unwrap();
        super::tls::ca(&certs, "ca");
        super::tls::leaf(&certs, "ca", "mx", "127.0.0.1", Some("IP:127.0.0.1"), "2");
        let tls = [certs.join("mx.crt"), certs.join("mx.key")];
        Self::start_script(dir, tls.map(PathBuf::into_os_string), user, password).await
    }

    /// One without TLS that offers AUTH in the clear, as `user` with `password`.
    pub async fn start_auth_plain(dir: &Path, user: &str, password: &str) -> Smtp {
        Self::start_script(dir, ["-".into(), "-".into()], user, password).await
    }

    /// `smtp_auth.py` with its certificate and key (`-` for no TLS).
    async fn start_script(dir: &Path, tls: [OsString; 2], user: &str, password: &str) -> Smtp {
        let port = super::free_port();
        let maildir = dir.join("maildir");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/smtp_auth.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(port.to_string())
            .arg(&maildir)
            .args(tls)
            .args([user, password]);
        Self::spawn(cmd, port, maildir).await
    }

    /// The CA that signed [`Smtp::start_auth`]'s certificate.
    pub fn ca_file(dir: &Path) -> PathBuf {
        dir.join("smtp-certs").join("ca.crt")
    }

    async fn spawn(mut cmd: Command, port: u16, maildir: PathBuf) -> Smtp {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd)");
        wait_for("aiosmtpd listening", Duration::from_secs(15), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
        .unwrap();
        Smtp {
            port,
            maildir,
            child,
        }
    }

    /// How many logins [`Smtp::start_auth`]'s server refused.
    pub fn refused(&self) -> usize {
        std::fs::read_to_string(self.maildir.join("refused"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Every mail received, as text.
    pub fn mails(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(dir) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in dir.flatten() {
                    out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }

    /// Waits until `n` mails came.
    pub async fn wait(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_for(&format!("{n} mails"), timeout, || async {
            let m = self.mails();
            (m.len() >= n).then_some(m)
        })
        .await
        .unwrap()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
