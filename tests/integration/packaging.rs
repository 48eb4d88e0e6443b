//! The Debian package: scripts/package.sh builds it with `cargo deb
//! --no-build`, as scripts/release.sh does, from a copy of the debug binary
//! the tests already built in a scratch target folder (never a release
//! build: that takes 20+ minutes on CI's 2 cores; cargo-deb reads Cargo.toml's
//! `target/release/` assets as that folder's `release/`). dpkg unpacks it
//! into a scratch root with its own dpkg database (`dpkg --root R
//! --unpack`), and the installed files are what an operator runs: `cpi
//! --version`, the systemd unit (`systemd-analyze verify`), completions and
//! man pages. scripts/test.sh installs cargo-deb.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn run(program: &str, args: &[&str]) -> String {
    crate::support::bin::tool(program, args, None)
}

/// Builds the package into `dir`; its path.
fn build_package(dir: &Path) -> PathBuf {
    let target = dir.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_cpi"), target.join("release/cpi")).unwrap();
    let script = repo("scripts/package.sh");
    // --fast: lighter compression; the test needs the contents, not the size.
    let out = run(
        script.to_str().unwrap(),
        &[
            target.to_str().unwrap(),
            dir.join("out").to_str().unwrap(),
            "--fast",
        ],
    );
    PathBuf::from(
        out.lines()
            .last()
            .expect("package.sh prints the .deb")
            .trim(),
    )
}

#[test]
fn package_installs_into_a_scratch_root_and_its_binary_and_unit_work() {
    let work = tempfile::tempdir().unwrap();
    let deb = build_package(work.path());
    assert!(deb.is_file(), "{}", deb.display());

    // The control fields an installer reads.
    let control = run("dpkg-deb", &["--field", deb.to_str().unwrap()]);
    for field in [
        "Package: cpi",
        &format!("Version: {}", env!("CARGO_PKG_VERSION")),
        "Architecture: ",
        "Maintainer: ",
        "Description: ",
        "adduser",
        "libc6",
    ] {
        assert!(control.contains(field), "no {field:?} in:\n{control}");
    }
    // The maintainer script of debian/ and the config folder's README as a
    // conffile (kept on upgrade when the operator edited it).
    let info = work.path().join("control");
    run(
        "dpkg-deb",
        &["--control", deb.to_str().unwrap(), info.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(info.join("postinst")).unwrap(),
        std::fs::read_to_string(repo("debian/postinst")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(info.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/cpi/README"
    );

    // Installed by dpkg into a root of its own, with a dpkg database of its
    // own: `dpkg --root R --unpack` is `dpkg -i` without its configure
    // step, whose postinst (creating the system user `cpi`) would need a
    // system inside R to run in.
    let root = work.path().join("root");
    let admin = root.join("var/lib/dpkg");
    for d in ["updates", "info"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    let root_flag = format!("--root={}", root.display());
    run("dpkg", &[&root_flag, "--unpack", deb.to_str().unwrap()]);
    let status = run("dpkg", &[&root_flag, "--status", "cpi"]);
    assert!(status.contains("Status: install ok unpacked"), "{status}");
    let listed = run("dpkg", &[&root_flag, "--listfiles", "cpi"]);
    assert!(listed.lines().any(|l| l == "/usr/bin/cpi"), "{listed}");
    let cpi = root.join("usr/bin/cpi");
    let version = run(cpi.to_str().unwrap(), &["--version"]);
    assert!(
        version.starts_with(&format!("cpi {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    for file in [
        "lib/systemd/system/cpi.service",
        "usr/share/bash-completion/completions/cpi",
        "usr/share/zsh/vendor-completions/_cpi",
        "usr/share/fish/vendor_completions.d/cpi.fish",
        "usr/share/man/man1/cpi.1.gz",
        "usr/share/man/man1/cpi-apply.1.gz",
        "usr/share/man/man1/cpi-run.1.gz",
        "usr/share/man/man1/cpi-migrate.1.gz",
        "usr/share/doc/cpi/copyright",
    ] {
        assert!(root.join(file).is_file(), "the package has no {file}");
    }
    assert!(root.join("etc/cpi").is_dir(), "no config folder /etc/cpi");
    // A conffile waits as .dpkg-new until the configure step.
    assert!(listed.lines().any(|l| l == "/etc/cpi/README"), "{listed}");
    let readme = std::fs::read_to_string(root.join("etc/cpi/README.dpkg-new")).unwrap();
    assert!(readme.contains("credentials/"), "{readme}");
    let copyright = std::fs::read_to_string(root.join("usr/share/doc/cpi/copyright")).unwrap();
    assert!(copyright.starts_with("MIT License"), "{copyright}");
    assert!(
        !root.join("usr/share/man/man1/cpi-man.1.gz").exists(),
        "the hidden man command has no page"
    );

    // The installed unit starts the installed binary, and systemd accepts it.
    let unit = root.join("lib/systemd/system/cpi.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/cpi run"), "{text}");
    // systemd-analyze checks that ExecStart's program exists and runs, on
    // this machine: the check runs on a copy pointing at the installed binary
    // in the scratch root (a --root of its own has no sysinit.target).
    let check = work.path().join("check");
    std::fs::create_dir(&check).unwrap();
    std::fs::write(
        check.join("cpi.service"),
        text.replace("/usr/bin/cpi", cpi.to_str().unwrap()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "./cpi.service"])
        .current_dir(&check)
        .output()
        .expect("systemd-analyze cannot run: scripts/test.sh installs it");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success(), "systemd-analyze verify:\n{said}");
}
