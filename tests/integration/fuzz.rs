//! The fuzz targets of `cpi::fuzzing`, in-tree: every kept crasher
//! (`tests/integration/fuzz_crashers/<target>/`) is replayed, then each
//! target runs on mutated seeds for `CPI_FUZZ_SECONDS` (default 2) — a
//! cheap, always-on cousin of `scripts/fuzz.sh` (cargo-fuzz, libFuzzer).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::fs::repo_root;

/// xorshift64*: reproducible from the seed printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Interesting bytes for YAML, JSON and CSV fields.
const TOKENS: &[&[u8]] = &[
    b"&a ",
    b"*a",
    b"<<: *a",
    b"\n- ",
    b": ",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"\"",
    b"'",
    b"\t",
    b"\n",
    b"---\n",
    b"...\n",
    b"!!binary ",
    b"~",
    b"null",
    b"1e999",
    b"-0",
    b"\\",
    b"\0",
    b"\xff",
    b"\xc3",
    b"2024-02-30",
    b"24:00:00",
    b"+99:99",
    b"NaN",
    b"Infinity",
    b"9223372036854775808",
    b"env_var",
    b"inbox: ",
    b"file_pattern: '[",
    b"**/",
    b"..",
    b"\xef\xbb\xbf",
];

fn mutate(rng: &mut Rng, seed: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(d.len() + 1);
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                d.splice(at..at, t.iter().copied());
            }
            2 if !d.is_empty() => {
                let end = (at + rng.below(16)).min(d.len());
                d.drain(at.min(end)..end);
            }
            3 => {
                // Splice a piece of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let to = (from + rng.below(64)).min(other.len());
                d.splice(at..at, other[from..to].iter().copied());
            }
            4 if !d.is_empty() => {
                // Repeat a piece (deep nesting, long fields).
                let end = (at + rng.below(8)).min(d.len());
                let piece: Vec<u8> = d[at.min(end)..end].to_vec();
                for _ in 0..rng.below(64) {
                    d.splice(at..at, piece.iter().copied());
                }
            }
            _ => d.insert(at, rng.next() as u8),
        }
    }
    d
}

fn seeds_of(target: &str) -> Vec<Vec<u8>> {
    let root = repo_root();
    let mut seeds: Vec<Vec<u8>> = match target {
        "manifest" => {
            let mut v = Vec::new();
            for dir in ["examples", "tests"] {
                collect_yaml(&root.join(dir), &mut v);
            }
            v
        }
        "project_config" => vec![
            br#"{"inbox":"/srv/in","defaults":{"file_pattern":"*.csv","primary_key":"id"},"tables":[{"file_pattern":"orders_*.csv","table":"sales.orders","primary_key":["order_id"],"mode":"upsert","delimiter":";","null":["","NULL"]}]}"#.to_vec(),
            br#"{"settle_seconds":2.5,"defaults":{"on_error":"skip_rows","max_errors":10,"encoding":"latin1","columns":{"A":"a"}}}"#.to_vec(),
        ],
        "record_reader" => vec![
            b"\x00\x02id,name\r\n1,\"a\nb\"\r\n2,x\n".to_vec(),
            b"\x05\x00a;b\n\"\\\";x\"\n3;4".to_vec(),
            b"\x02\x01a\tb\n".iter().chain(&[b'z'; 200]).copied().collect(),
        ],
        "header_mapper" => vec![
            b"id,Name,amount=total".to_vec(),
            b"a,A,,b=".to_vec(),
        ],
        _ => [
            &b"\x001234"[..], b"\x05-12.5e3", b"\x0a2024-02-29", b"\x0c2024-02-29 12:00:00+02",
            b"\x0de3b0c442-98fc-1c14-9afb-f4c8996fb924", b"\x0f{\"a\":[1,2]}", b"\x07a\tb\nc\\",
            b"\x85123.456", b"\x46abc",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect(),
    };
    seeds.retain(|s| s.len() < 64 * 1024);
    seeds.truncate(300);
    seeds
}

fn collect_yaml(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let p = e.path();
        if t.is_dir() {
            collect_yaml(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
}

fn run(target: &str, check: fn(&[u8])) {
    // Kept crashers first: each once fixed, forever a regression test.
    let crashers = repo_root()
        .join("tests/integration/fuzz_crashers")
        .join(target);
    if let Ok(entries) = std::fs::read_dir(&crashers) {
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            check(&data);
        }
    }
    let seeds = seeds_of(target);
    assert!(!seeds.is_empty());
    let secs: u64 = std::env::var("CPI_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base, &seeds);
        let started = Instant::now();
        let r = std::panic::catch_unwind(|| check(&input));
        let took = started.elapsed();
        if r.is_err() || took > Duration::from_secs(2) {
            let dir = std::env::temp_dir().join("cpi-fuzz-crashers").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("crash-{seed:x}-{n}"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{target}: input {} ({} bytes) {} (seed {seed:#x}, took {took:?})",
                path.display(),
                input.len(),
                if r.is_err() {
                    "panicked"
                } else {
                    "was too slow"
                }
            );
        }
        n += 1;
    }
    eprintln!("{target}: {n} inputs in {secs} s, seed {seed:#x}");
}

#[test]
fn fuzz_manifest_loader() {
    run("manifest", cpi::fuzzing::manifest);
}

#[test]
fn fuzz_project_config() {
    run("project_config", cpi::fuzzing::project_config);
}

#[test]
fn fuzz_copy_encoders() {
    run("copy_encoders", cpi::fuzzing::copy_encoders);
}

#[test]
fn fuzz_record_reader() {
    run("record_reader", cpi::fuzzing::record_reader);
}

#[test]
fn fuzz_header_mapper() {
    run("header_mapper", cpi::fuzzing::header_mapper);
}
