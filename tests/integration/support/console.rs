//! A real headless Chromium driven over WebDriver (chromedriver), for the
//! console, freshness and single-sign-on tests. A browser that cannot start
//! fails the test with the reason: CI never passes one by skipping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use super::{free_port, TestDb};

/// chromedriver on a free port, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromedriver"))
}

pub async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(chromedriver())
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start chromedriver (install Debian's chromium-driver; .ci/run does): {e}"
            )
        });
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/status")).await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { child, url }
}

pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

pub async fn browser(driver: &Driver, binary: &str, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,1000", "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("headless Chromium did not start through chromedriver: {e}"))
}

/// chromedriver with one browser on it, its profile below `tmp`, where the
/// test writes whatever else it needs (manifests, inbox, screenshots).
/// Taking `c` out keeps the rest alive until the value goes out of scope.
pub struct Browser {
    /// The browser.
    pub c: Client,
    /// The test's temp folder; the profile is `tmp/profile`.
    pub tmp: tempfile::TempDir,
    /// The driver, for another browser with a profile of its own.
    pub driver: Driver,
}

impl Browser {
    /// chromedriver on a free port and Chromium on it.
    pub async fn start() -> Browser {
        let driver = start_driver().await;
        let tmp = tempfile::tempdir().unwrap();
        let c = browser(&driver, &chromium(), &tmp.path().join("profile")).await;
        Browser { c, tmp, driver }
    }
}

/// The start of every console test: a browser and a fresh database.
pub async fn world() -> (Browser, TestDb) {
    let b = Browser::start().await;
    (b, TestDb::new().await)
}
