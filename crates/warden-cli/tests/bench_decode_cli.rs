//! `warden bench decode` on the embedded default with tiny settings: the real binary builds its
//! corpus, trains a small governed run, admits a bundle against the run's manifest, decodes
//! governed and ungoverned, and prints the table. Checks the rows are there and their numbers
//! parse and add up (never a timing).

use std::process::Command;

/// The numbers in `line` after its first `:` (or the whole line), in order.
fn numbers(line: &str) -> Vec<f64> {
    line.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')' || c == ';')
        .filter_map(|w| w.parse::<f64>().ok())
        .collect()
}

fn line<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stdout}"))
}

#[test]
fn bench_decode_prints_both_sides_the_ratio_and_the_governance_time() {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "bench",
            "decode",
            "--prompts",
            "2",
            "--max-tokens",
            "6",
            "--train-steps",
            "3",
            "--scale",
            "0.02",
            "--layers",
            "1",
            "--width",
            "16",
            "--batch",
            "4",
            "--context",
            "32",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    assert!(
        line(&stdout, "  bundle").contains("admitted against manifest sha256:"),
        "{stdout}"
    );
    let detectors = line(&stdout, "  detectors");
    for part in [
        "verbatim licensed-news",
        "deny user-pii",
        "flaggers email, phone, card, api-key",
    ] {
        assert!(detectors.contains(part), "{detectors}");
    }
    // side, calls, tokens, decode s, ms/token, tokens/s, prefill s.
    for side in ["ungoverned ", "governed "] {
        let row = numbers(line(&stdout, side));
        assert_eq!(row.len(), 6, "{side}: {row:?}\n{stdout}");
        assert_eq!(row[0], 2.0, "two calls per side");
        // The byte model has no end token and the bound is the request's budget: exactly
        // max_tokens per call unless the policy stopped one.
        assert!(row[1] > 0.0 && row[1] <= 12.0, "{side}: {row:?}");
        assert!(row.iter().all(|x| x.is_finite() && *x >= 0.0), "{row:?}");
    }
    let ungoverned_tokens = numbers(line(&stdout, "ungoverned "))[1];
    assert_eq!(ungoverned_tokens, 12.0, "{stdout}");

    let ratio = line(&stdout, "ratio governed/ungoverned");
    let values = numbers(ratio);
    assert!(values[0].is_finite() && values[0] > 0.0, "{ratio}");
    assert!(
        ratio.ends_with("PASS") || ratio.ends_with("MISS"),
        "{ratio}"
    );
    let median = numbers(line(&stdout, "  median over the 2 prompt pairs"));
    assert!(median.iter().all(|x| x.is_finite()), "{median:?}");

    let governance = line(&stdout, "governance per token (us)");
    let g = numbers(governance);
    // mean, p50, p99, max, tokens.
    assert_eq!(g.len(), 5, "{governance}");
    assert!(
        g[1] <= g[2] && g[2] <= g[3],
        "p50 <= p99 <= max: {governance}"
    );
    let targets = line(&stdout, "  targets: mean");
    assert_eq!(
        targets.matches("PASS").count() + targets.matches("MISS").count(),
        2,
        "{targets}"
    );
    let parts = numbers(line(&stdout, "  parts (us per token)"));
    assert_eq!(parts.len(), 5, "{parts:?}");
    // The parts add up to the mean (rounding of five printed values aside).
    let sum: f64 = parts.iter().sum();
    assert!(
        (sum - g[0]).abs() <= 0.03 + g[0] * 1e-3,
        "{sum} vs {}",
        g[0]
    );

    let verdicts = numbers(line(&stdout, "verdicts:"));
    assert!(
        verdicts[0] >= g[4],
        "every emitted token was judged: {verdicts:?}"
    );
    assert!(line(&stdout, "stops:").contains("governed stop"));
    assert!(line(&stdout, "outputs:").contains("of 2 governed calls"));
}
