//! A real S3 server on loopback: `moto_server` (PyPI `moto[server]`,
//! installed by scripts/test.sh), one per test on a free port, killed when
//! dropped. A test fails (never skips) when moto_server is missing.
//!
//! [`Proxy`] stands between cpi and the server so that a test can make the
//! store go away mid-read and come back on the same address: moto keeps
//! its objects in memory, so killing moto itself would lose them.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::free_port;
use super::wait::wait_for;

/// The keys the tests' own client uses (moto accepts any).
pub const TEST_KEY_ID: &str = "AKIATESTTESTTEST";
/// A real-looking secret access key, planted to check it never leaks.
pub const PLANTED_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDSECRET";

/// A running moto_server.
pub struct S3Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl S3Server {
    /// Starts moto_server on a free port and waits until it answers.
    pub async fn start() -> S3Server {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server must be installed (pip install 'moto[server]'; scripts/test.sh does)",
            );
        let server = S3Server { child, port };
        let url = server.endpoint();
        wait_for("moto_server to answer", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let r = reqwest::get(&url).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await
        .unwrap();
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `storage:` block of a project config for `endpoint`.
pub fn storage_yaml(endpoint: &str) -> String {
    format!("storage: {{endpoint: \"{endpoint}\", region: us-east-1, allow_http: true, path_style: true}}")
}

/// The test's own client on `endpoint` (fixed keys, path style).
pub fn client(endpoint: &str) -> Client {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            TEST_KEY_ID,
            "test-secret",
            None,
            None,
            "tests",
        ))
        .http_client(http)
        .build();
    Client::from_conf(conf)
}

/// Creates `bucket`.
pub async fn create_bucket(c: &Client, bucket: &str) {
    c.create_bucket().bucket(bucket).send().await.unwrap();
}

/// Puts `body` at `bucket/key`.
pub async fn put(c: &Client, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.into()))
        .send()
        .await
        .unwrap();
}

/// The keys under `prefix` (all depths), sorted.
pub async fn keys(c: &Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .unwrap();
        out.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    out.sort();
    out
}

/// The object's content.
pub async fn get(c: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let o = c.get_object().bucket(bucket).key(key).send().await.unwrap();
    o.body.collect().await.unwrap().into_bytes().to_vec()
}

/// A TCP proxy on its own port in front of `upstream`: [`Proxy::cut`]
/// drops every connection and stops listening (the store is gone);
/// [`Proxy::restore`] listens again on the same port. Optionally slow, so
/// that a test can cut a read in the middle.
pub struct Proxy {
    /// The port cpi is given.
    pub port: u16,
    upstream: u16,
    /// Bytes sent from the server to clients so far.
    pub down_bytes: Arc<AtomicU64>,
    /// Bytes per 10 ms tick from the server (0: unlimited).
    rate: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy in front of 127.0.0.1:`upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let p = Proxy {
            port: free_port(),
            upstream,
            down_bytes: Arc::default(),
            rate: Arc::default(),
            cut: Arc::default(),
            tasks: Arc::default(),
        };
        p.listen().await;
        p
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Limits the server's bytes to `per_tick` every 10 ms (0: no limit).
    pub fn throttle(&self, per_tick: u64) {
        self.rate.store(per_tick, Ordering::Relaxed);
    }

    async fn listen(&self) {
        self.cut.store(false, Ordering::Relaxed);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (upstream, down, rate, cut, tasks) = (
            self.upstream,
            self.down_bytes.clone(),
            self.rate.clone(),
            self.cut.clone(),
            self.tasks.clone(),
        );
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if cut.load(Ordering::Relaxed) {
                    return;
                }
                let (down, rate) = (down.clone(), rate.clone());
                let t = tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    pipe(client, server, down, rate).await;
                });
                tasks.lock().unwrap().push(t);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// The store goes away: every connection is dropped, nothing listens.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// The store is back, on the same port, at full speed.
    pub async fn restore(&self) {
        self.throttle(0);
        // The aborted listener releases the port as its task is dropped.
        let mut tries = 0;
        loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => {
                    drop(l);
                    break;
                }
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen again on {}: {e}", self.port),
            }
        }
        self.listen().await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn pipe(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    down: Arc<AtomicU64>,
    rate: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    };
    let back = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let limit = rate.load(Ordering::Relaxed) as usize;
            let want = if limit == 0 {
                buf.len()
            } else {
                limit.min(buf.len())
            };
            let n = match sr.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            down.fetch_add(n as u64, Ordering::Relaxed);
            if limit != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, back);
}
