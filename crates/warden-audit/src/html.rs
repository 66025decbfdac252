//! The self-contained HTML report of an audit: inline CSS and SVG only, no scripts, no
//! external assets, so it renders offline and can be archived next to the lineage.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use warden_corpus::prove::Proof;

use crate::{Report, Timeline};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.pass{color:#176317;font-weight:bold}.fail{color:#b00020;font-weight:bold}\
svg{background:#fafafa;border:1px solid #ddd;margin:.3em}.small{font-size:11px;fill:#555}\
code{font-size:12px;word-break:break-all}.regions{display:flex;flex-wrap:wrap}";

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const PAD: f64 = 30.0;

/// A line chart of (x, y) points, with the bound in force at each x as a dashed red step line
/// (a policy transition can change it mid-run).
fn line_chart(title: &str, points: &[(f64, f64)], bound: &[(f64, f64)], w: f64, h: f64) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"14\" class=\"small\">{}</text>",
        escape(title)
    );
    if points.is_empty() {
        svg.push_str("<text x=\"40\" y=\"50\" class=\"small\">no data</text></svg>");
        return svg;
    }
    let (x_min, x_max) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y_min, mut y_max) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    for (_, b) in bound {
        y_min = y_min.min(*b);
        y_max = y_max.max(*b);
    }
    y_min = y_min.min(0.0);
    let x_span = (x_max - x_min).max(1.0);
    let y_span = (y_max - y_min).max(1e-12);
    let x = |v: f64| PAD + (v - x_min) / x_span * (w - 2.0 * PAD);
    let y = |v: f64| h - PAD + 8.0 - (v - y_min) / y_span * (h - 2.0 * PAD);
    let path: Vec<String> = points
        .iter()
        .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
        .collect();
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1.5\" points=\"{}\"/>",
        path.join(" ")
    );
    if let Some(&(_, last)) = bound.last() {
        // A step line: each bound holds until the next iteration's.
        let mut steps = Vec::with_capacity(bound.len() * 2);
        for (i, (a, b)) in bound.iter().enumerate() {
            if i > 0 {
                steps.push(format!("{:.1},{:.1}", x(*a), y(bound[i - 1].1)));
            }
            steps.push(format!("{:.1},{:.1}", x(*a), y(*b)));
        }
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#b00020\" stroke-dasharray=\"4 3\" points=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"small\">bound {last}</text>",
            steps.join(" "),
            w - PAD - 70.0,
            y(last) - 3.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{PAD}\" y=\"{:.1}\" class=\"small\">{x_min}</text><text x=\"{:.1}\" y=\"{:.1}\" class=\"small\">{x_max}</text>\
         <text x=\"2\" y=\"{:.1}\" class=\"small\">{y_max:.3}</text><text x=\"2\" y=\"{:.1}\" class=\"small\">{y_min:.3}</text></svg>",
        h - 4.0,
        w - PAD - 20.0,
        h - 4.0,
        PAD,
        h - PAD + 8.0
    );
    svg
}

/// Gate decisions over time: per iteration a stacked bar of region verdicts, failures in red.
fn gate_chart(timeline: &Timeline) -> String {
    let n = timeline.iterations.len() + timeline.failures.len();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"gate decisions\">\
         <text x=\"4\" y=\"14\" class=\"small\">region verdicts per iteration: admit (green), clip (orange), reject (grey), untouched (light); failures red</text>"
    );
    if n == 0 {
        svg.push_str("</svg>");
        return svg;
    }
    let max_it = timeline
        .iterations
        .iter()
        .map(|p| p.iteration)
        .chain(timeline.failures.iter().map(|f| f.iteration))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let bar = ((WIDTH - 2.0 * PAD) / max_it).clamp(1.0, 20.0);
    let plot = HEIGHT - 2.0 * PAD;
    for point in &timeline.iterations {
        let total = point.regions.len().max(1) as f64;
        let x = PAD + (point.iteration as f64 - 1.0) / max_it * (WIDTH - 2.0 * PAD);
        let mut y = HEIGHT - PAD + 8.0;
        for (verdict, color) in [
            ("admit", "#2e8b57"),
            ("clip", "#e69500"),
            ("reject", "#888"),
            ("untouched", "#ddd"),
        ] {
            let count = point
                .regions
                .iter()
                .filter(|r| r.verdict == verdict)
                .count() as f64;
            if count == 0.0 {
                continue;
            }
            let height = count / total * plot;
            y -= height;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{height:.1}\" fill=\"{color}\"><title>iteration {}: {count} {verdict}</title></rect>",
                point.iteration
            );
        }
    }
    for failure in &timeline.failures {
        let x = PAD + (failure.iteration as f64 - 1.0) / max_it * (WIDTH - 2.0 * PAD);
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{plot:.1}\" fill=\"#b00020\"><title>iteration {}: {} failure, {}</title></rect>",
            HEIGHT - PAD + 8.0 - plot,
            failure.iteration,
            escape(&failure.gate),
            escape(&failure.action)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn table(out: &mut String, id: &str, headers: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<table id=\"{id}\"><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// Renders the report as one self-contained HTML document.
pub fn render(report: &Report) -> String {
    let t = &report.timeline;
    let mut out = String::new();
    let verdict = if report.passed() {
        "<span class=\"pass\">PASSED</span>"
    } else {
        "<span class=\"fail\">FAILED</span>"
    };
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>warden audit: {}</title><style>{STYLE}</style></head><body>\
         <h1>warden audit: {verdict}</h1><p>run <code>{}</code>, lineage <code>{}</code> ({} records; the run starts at record {})</p>",
        escape(&report.run_dir),
        escape(&report.run_dir),
        escape(&report.lineage_dir),
        report.records,
        report.start_seq
    );

    out.push_str("<h2>Checks</h2>");
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| {
            vec![
                escape(c.check.name()),
                escape(c.title),
                if c.passed {
                    "<span class=\"pass\">passed</span>".into()
                } else {
                    format!("<span class=\"fail\">{} findings</span>", c.findings)
                },
                c.examined.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        "checks",
        &["check", "proves", "result", "examined"],
        &rows,
    );

    out.push_str("<h2>Findings</h2>");
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            vec![
                escape(f.check.name()),
                f.seq.map_or_else(|| "—".into(), |s| s.to_string()),
                f.iteration.map_or_else(|| "—".into(), |s| s.to_string()),
                format!("<code>{}</code>", escape(&f.field)),
                escape(&f.message),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("<p class=\"pass\">No findings: every check passed.</p>");
    }
    table(
        &mut out,
        "findings",
        &["check", "record", "iteration", "field", "finding"],
        &rows,
    );

    out.push_str("<h2>Loss</h2>");
    let loss: Vec<(f64, f64)> = t
        .iterations
        .iter()
        .filter_map(|p| p.loss.map(|l| (p.iteration as f64, l)))
        .collect();
    out.push_str(&line_chart(
        "training loss per iteration",
        &loss,
        &[],
        WIDTH,
        HEIGHT,
    ));

    out.push_str("<h2>Gate decisions over time</h2>");
    out.push_str(&gate_chart(t));

    out.push_str("<h2>Gradient norms against their bounds</h2><div class=\"regions\">");
    type Series = Vec<(f64, f64)>;
    let mut regions: BTreeMap<&str, (Series, Series)> = BTreeMap::new();
    for p in &t.iterations {
        for r in &p.regions {
            let entry = regions.entry(r.region.as_str()).or_default();
            if let Some(n) = r.grad_norm {
                entry.0.push((p.iteration as f64, n));
            }
            if let Some(b) = r.bound {
                entry.1.push((p.iteration as f64, b));
            }
        }
    }
    for (region, (points, bound)) in &regions {
        out.push_str(&line_chart(region, points, bound, 300.0, 120.0));
    }
    out.push_str("</div>");

    out.push_str("<h2>Classes × depths (admitted sample draws)</h2>");
    let depths: BTreeSet<&str> = t
        .classes
        .values()
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    let mut headers = vec!["class"];
    headers.extend(depths.iter().copied());
    let rows: Vec<Vec<String>> = t
        .classes
        .iter()
        .map(|(class, by_depth)| {
            let mut row = vec![escape(class)];
            row.extend(
                depths
                    .iter()
                    .map(|d| by_depth.get(*d).copied().unwrap_or(0).to_string()),
            );
            row
        })
        .collect();
    table(&mut out, "classes", &headers, &rows);

    let _ = write!(
        out,
        "<h2>Exclusions and refusals</h2><p>{} samples excluded at admission (signed declaration); {} draws refused or skipped by the data gate{}.</p>",
        t.corpus_exclusions,
        t.n_refusals,
        if t.n_refusals > t.refusals.len() as u64 {
            format!(", the first {} listed", t.refusals.len())
        } else {
            String::new()
        }
    );
    let rows: Vec<Vec<String>> = t
        .refusals
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                r.iteration.to_string(),
                escape(&r.source),
                format!("<code>{}</code>", escape(&r.hash)),
                escape(&r.status),
            ]
        })
        .collect();
    table(
        &mut out,
        "refusals",
        &["record", "iteration", "source", "sample", "status"],
        &rows,
    );
    let rows: Vec<Vec<String>> = t
        .failures
        .iter()
        .map(|f| {
            vec![
                f.seq.to_string(),
                f.iteration.to_string(),
                escape(&f.gate),
                escape(&f.action),
                escape(&f.detail),
            ]
        })
        .collect();
    out.push_str("<h2>Failures</h2>");
    table(
        &mut out,
        "failures",
        &["record", "iteration", "gate", "action", "detail"],
        &rows,
    );

    if !report.inclusion_proofs.is_empty() {
        let _ = write!(
            out,
            "<h2>Inclusion proofs</h2><p>{} trained samples chosen by the lineage root, each \
             proven (RFC 6962) in the signed corpus root and its source's signed root.</p>",
            report.inclusion_proofs.len()
        );
        let rows: Vec<Vec<String>> = report
            .inclusion_proofs
            .iter()
            .map(|p| {
                let (leaf, source) = match &p.proof {
                    Some(Proof::Inclusion {
                        tree_size,
                        leaf,
                        source,
                        ..
                    }) => (
                        format!("{} of {tree_size}", leaf.index),
                        format!("{} line {}", escape(&source.source), source.line),
                    ),
                    _ => ("—".into(), "—".into()),
                };
                vec![
                    p.seq.to_string(),
                    p.iteration.to_string(),
                    format!("<code>{}</code>", escape(&p.hash)),
                    leaf,
                    source,
                    match &p.problem {
                        None => "<span class=\"pass\">verified</span>".into(),
                        Some(problem) => format!("<span class=\"fail\">{}</span>", escape(problem)),
                    },
                ]
            })
            .collect();
        table(
            &mut out,
            "proofs",
            &[
                "record",
                "iteration",
                "sample",
                "corpus leaf",
                "source",
                "proof",
            ],
            &rows,
        );
    }

    out.push_str("<h2>Policy versions</h2>");
    let rows: Vec<Vec<String>> = t
        .policies
        .iter()
        .map(|p| {
            vec![
                escape(&p.version),
                p.seq.to_string(),
                escape(&p.reason),
                format!("<code>{}</code>", escape(&p.digest)),
            ]
        })
        .collect();
    table(
        &mut out,
        "policies",
        &["version", "record", "reason", "canonical digest"],
        &rows,
    );
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_findings_is_escaped() {
        assert_eq!(
            escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn a_bound_changed_mid_run_is_drawn_as_a_step() {
        let svg = line_chart(
            "r",
            &[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)],
            &[(1.0, 4.0), (2.0, 4.0), (3.0, 0.5)],
            130.0,
            100.0,
        );
        let bound = svg
            .split("stroke-dasharray=\"4 3\" points=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a bound polyline");
        let points: Vec<(&str, &str)> = bound
            .split(' ')
            .map(|xy| xy.split_once(',').unwrap())
            .collect();
        // One corner per point after the first: the old bound holds until the new one begins,
        // then the line drops at iteration 3's x.
        assert_eq!(points.len(), 5, "{bound}");
        assert!(points[..4].iter().all(|p| p.1 == points[0].1), "{bound}");
        assert_eq!(points[3].0, points[4].0);
        assert_ne!(points[3].1, points[4].1);
        assert!(svg.contains("bound 0.5"));
    }

    #[test]
    fn a_chart_without_points_says_so() {
        assert!(line_chart("x", &[], &[], 10.0, 10.0).contains("no data"));
    }
}
