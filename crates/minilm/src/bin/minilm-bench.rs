//! Throughput of the embedder on entity descriptions like those pg_evolve embeds.
//!
//! `minilm-bench [TEXTS] [BATCH] [THREADS]` (defaults 2048, 32, the default thread count) loads
//! the model from `EVOLVE_MINILM_DIR` (default `target/minilm-model`), reports the resident
//! memory before and after loading, embeds TEXTS generated texts of about 50 tokens in batches
//! of BATCH, and ends with one line `minilm texts/s: X (batch B, threads T)`. With
//! `EVOLVE_MINILM_TEXTS` naming a file holding a JSON array of strings, it embeds those instead.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use evolve_minilm::{default_threads, MiniLm};

/// Resident set size of this process in MiB (Linux), from /proc/self/status.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn show_rss(rss: Option<f64>) -> String {
    rss.map_or_else(|| "n/a".to_owned(), |m| format!("{m:.1} MiB"))
}

/// A small deterministic generator, so every run embeds the same texts.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// `count` enriched entity texts of about 40 to 60 word pieces.
fn texts(count: usize) -> Vec<String> {
    const PLACES: [&str; 8] = [
        "10 km SW of Town, CA",
        "3 km NNE of Ridgecrest, CA",
        "45 km E of Hualien City, Taiwan",
        "Fox Islands, Aleutian Islands, Alaska",
        "12 km WNW of Anza, CA",
        "South of the Fiji Islands",
        "8 km SSE of Volcano, Hawaii",
        "central Mid-Atlantic Ridge",
    ];
    const STATUS: [&str; 3] = ["reviewed", "automatic", "deleted"];
    const STATIONS: [&str; 4] = ["PAS", "ANMO", "COLA", "KONO"];
    const NETWORKS: [&str; 4] = ["CI", "IU", "US", "NC"];
    let mut rng = Lcg(42);
    (0..count)
        .map(|i| match i % 4 {
            3 => format!(
                "entity: station — A seismograph station of a network\n\
                 code (string) = \"{}\"\nnetwork (string) = \"{}\"\n\
                 elevation (number): Metres above sea level = {}\n\
                 belongs to: network",
                STATIONS[rng.next(4)],
                NETWORKS[rng.next(4)],
                rng.next(3000)
            ),
            _ => format!(
                "entity: earthquake — A seismic event\n\
                 mag (number): Magnitude = {}.{}\nplace (string) = \"{}\"\n\
                 status (string) = \"{}\"\ndepth (number): Depth in km = {}.{}",
                rng.next(8),
                rng.next(10),
                PLACES[rng.next(PLACES.len())],
                STATUS[rng.next(STATUS.len())],
                rng.next(700),
                rng.next(100)
            ),
        })
        .collect()
}

fn arg(n: usize, default: usize) -> Result<usize, String> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(a) => a
            .parse::<usize>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("argument {n} must be a positive integer, not {a:?}")),
    }
}

fn run() -> Result<(), String> {
    let count = arg(1, 2048)?;
    let batch = arg(2, 32)?;
    let threads = arg(3, default_threads())?;
    let dir = std::env::var_os("EVOLVE_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/minilm-model"));

    let before = rss_mib();
    let model = MiniLm::load_with_threads(&dir, threads).map_err(|e| {
        let mut msg = e.to_string();
        if matches!(e, evolve_minilm::LoadError::Missing { .. }) {
            msg.push_str("\nrun `bash scripts/model.sh` first, or set EVOLVE_MINILM_DIR");
        }
        msg
    })?;
    let after = rss_mib();
    println!(
        "load: {:.0} ms, RSS {} -> {} ({:.1} MiB of weights), threads {}",
        model.load_time().as_secs_f64() * 1e3,
        show_rss(before),
        show_rss(after),
        model.weight_bytes() as f64 / (1 << 20) as f64,
        model.threads()
    );

    // EVOLVE_MINILM_TEXTS: a JSON array of texts to embed instead (e.g. those a benchmark
    // embeds inside PostgreSQL, to compare the two on the same texts).
    let texts = match std::env::var_os("EVOLVE_MINILM_TEXTS") {
        Some(path) => {
            let raw = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", PathBuf::from(&path).display()))?;
            serde_json::from_str::<Vec<String>>(&raw).map_err(|e| {
                format!(
                    "{} is not a JSON array of strings: {e}",
                    PathBuf::from(&path).display()
                )
            })?
        }
        None => texts(count),
    };
    let count = texts.len();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens: usize = refs
        .iter()
        .map(|t| model.tokenize(t).map(|ids| ids.len()))
        .sum::<Result<usize, _>>()
        .map_err(|e| e.to_string())?;
    println!(
        "{count} texts, {:.1} tokens each on average",
        tokens as f64 / count as f64
    );

    // Warm-up: first-touch of the weights and the kernels' scratch memory.
    model
        .embed_batch(&refs[..batch.min(count)])
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut rates = Vec::new();
    for chunk in refs.chunks(batch) {
        let t = Instant::now();
        model.embed_batch(chunk).map_err(|e| e.to_string())?;
        rates.push(chunk.len() as f64 / t.elapsed().as_secs_f64());
    }
    let secs = started.elapsed().as_secs_f64();
    rates.sort_by(f64::total_cmp);
    println!(
        "per batch: median {:.1} texts/s, best {:.1} (a shared machine makes the total vary)",
        rates[rates.len() / 2],
        rates[rates.len() - 1]
    );
    println!(
        "RSS after embedding: {}; OS threads in the process: {}",
        show_rss(rss_mib()),
        std::fs::read_dir("/proc/self/task")
            .map_or_else(|_| "n/a".to_owned(), |d| d.count().to_string())
    );
    println!(
        "minilm texts/s: {:.1} (batch {batch}, threads {})",
        count as f64 / secs,
        model.threads()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minilm-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
