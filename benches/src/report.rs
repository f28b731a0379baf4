//! What one run found, and how it is written: `results.json` (every raw sample),
//! `table.md` (our value, the peer's, the ratio; the issue's targets; the machine and date)
//! and `plot.svg` (handover and failover distributions, drawn by hand: no system libraries).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Which side a figure is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// elect (library or `elect run`).
    Ours,
    /// The peer tool.
    Peer,
    /// The physical floor (one delete committed + one watch event delivered).
    Floor,
}

/// Raw samples of one measurement on one side.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// `handover`, `failover`, `cli`, …
    pub measurement: String,
    /// `etcd`, `zookeeper`, `consul`, `file`.
    pub backend: String,
    /// The settings (TTL, …) the samples were taken with.
    pub setting: String,
    /// Ours, the peer's, or the floor.
    pub side: Side,
    /// Who: `elect`, `etcdctl elect`, …
    pub tool: String,
    /// `ms` or `s`.
    pub unit: String,
    /// One value per round.
    pub values: Vec<f64>,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The measurement (`handover`, `failover`, `idle`, `herd`, `scale`, `cli`).
    pub measurement: String,
    /// The backend.
    pub backend: String,
    /// What the figure is (`median`, `p99`, `requests/s per candidate`, …) and its settings.
    pub what: String,
    /// The unit.
    pub unit: String,
    /// Our figure.
    pub ours: Option<f64>,
    /// The peer's figure.
    pub peer: Option<f64>,
    /// The peer tool.
    pub peer_tool: String,
    /// How the figure was obtained, where that is not obvious.
    pub note: String,
}

impl Row {
    /// The parts the rows of one comparison share: `measurement` on `backend`, beside
    /// `peer_tool`. [`Row::figure`] makes each row from it.
    pub fn of(measurement: &str, backend: &str, peer_tool: impl Into<String>) -> Row {
        Row {
            measurement: measurement.to_owned(),
            backend: backend.to_owned(),
            what: String::new(),
            unit: String::new(),
            ours: None,
            peer: None,
            peer_tool: peer_tool.into(),
            note: String::new(),
        }
    }

    /// A row of this comparison: `what`, in `unit`, ours and the peer's.
    pub fn figure(
        &self,
        what: impl Into<String>,
        unit: &str,
        ours: Option<f64>,
        peer: Option<f64>,
    ) -> Row {
        Row {
            what: what.into(),
            unit: unit.to_owned(),
            ours,
            peer,
            ..self.clone()
        }
    }

    /// This row, with how its figures were obtained.
    pub fn note(self, note: impl Into<String>) -> Row {
        Row {
            note: note.into(),
            ..self
        }
    }
}

/// One of the issue's targets, judged on this run.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The target as the issue states it.
    pub target: String,
    /// The figures it was judged on.
    pub figures: String,
    /// Whether this run meets it.
    pub met: bool,
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `nproc`.
    pub cpus: usize,
    /// `/proc/cpuinfo`'s model name.
    pub cpu_model: String,
    /// `uname -r`.
    pub kernel: String,
    /// `MemTotal` in MiB.
    pub memory_mib: u64,
}

impl Machine {
    /// Reads this machine's description.
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb / 1024);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel,
            memory_mib,
        }
    }
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// When the run started (UTC).
    pub date: String,
    /// The command line.
    pub command: String,
    /// `quick` or `full`, and the round counts.
    pub mode: String,
    /// The table's rows.
    pub rows: Vec<Row>,
    /// Every raw sample.
    pub series: Vec<Series>,
    /// The issue's targets.
    pub checks: Vec<Check>,
    /// Measurements that failed (after retries), with the error.
    pub failures: Vec<String>,
    /// How things were measured.
    pub notes: Vec<String>,
}

/// The median.
pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

/// The `p`-th percentile, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(0.0) => "0".to_owned(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn ratio(ours: Option<f64>, peer: Option<f64>) -> String {
    match (ours, peer) {
        (Some(o), Some(p)) if p != 0.0 => format!("{:.2}×", o / p),
        (Some(0.0), Some(_)) => "1×".to_owned(),
        _ => "—".to_owned(),
    }
}

impl Results {
    /// Writes `results.json`, `table.md` and `plot.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        std::fs::write(dir.join("table.md"), self.table())?;
        std::fs::write(dir.join("plot.svg"), self.plot())?;
        Ok(())
    }

    /// The Markdown table, with the machine, the date, the targets and the notes.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# elect benchmarks\n");
        let _ = writeln!(
            out,
            "Machine: {} × {} (nproc {}), {} MiB, Linux {}. Date: {}. Mode: {}.  ",
            m.cpus, m.cpu_model, m.cpus, m.memory_mib, m.kernel, self.date, self.mode
        );
        let _ = writeln!(
            out,
            "Servers: 3-node etcd 3.5, ZooKeeper 3.8 (tickTime 200 ms) and Consul 1.8 clusters on \
             loopback (`tests/cluster/cluster`). Regenerate with `{}`.\n",
            self.command
        );
        let _ = writeln!(
            out,
            "Ratio = ours / peer: below 1× is better for every figure here (times, requests, \
             memory).\n"
        );
        let _ = writeln!(
            out,
            "| measurement | backend | figure | unit | ours (elect) | peer | peer tool | ratio |"
        );
        let _ = writeln!(out, "| --- | --- | --- | --- | ---: | ---: | --- | ---: |");
        for r in &self.rows {
            let what = if r.note.is_empty() {
                r.what.clone()
            } else {
                format!("{} ({})", r.what, r.note)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.measurement,
                r.backend,
                what,
                r.unit,
                fmt_value(r.ours),
                fmt_value(r.peer),
                if r.peer_tool.is_empty() {
                    "—"
                } else {
                    &r.peer_tool
                },
                ratio(r.ours, r.peer)
            );
        }
        let _ = writeln!(out, "\n![handover and failover distributions](plot.svg)\n");
        if !self.checks.is_empty() {
            let _ = writeln!(out, "## The issue's targets in this run\n");
            let _ = writeln!(out, "| target | figures | met |");
            let _ = writeln!(out, "| --- | --- | --- |");
            for c in &self.checks {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    c.target,
                    c.figures,
                    if c.met { "yes" } else { "**no**" }
                );
            }
            let _ = writeln!(out);
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "## Measurements that failed\n");
            for f in &self.failures {
                let _ = writeln!(out, "- {}", f.replace('\n', " "));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "## How each figure is measured\n");
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        out
    }

    /// The SVG: one panel per measurement that has distributions (handover in ms on a log
    /// axis, failover in s), one strip per backend and side: every sample a dot, the median
    /// a bar, p25–p75 a box.
    pub fn plot(&self) -> String {
        let panels: Vec<(&str, &str, bool)> = vec![
            (
                "handover",
                "handover: leader resigns → successor leads (ms, log scale)",
                true,
            ),
            (
                "failover",
                "failover: leader SIGKILLed → successor leads (s)",
                false,
            ),
        ];
        let width = 960.0;
        let left = 330.0;
        let right = 30.0;
        let strip = 22.0;
        let mut body = String::new();
        let mut y = 20.0;
        for (measurement, title, log) in panels {
            let series: Vec<&Series> = self
                .series
                .iter()
                .filter(|s| s.measurement == measurement && !s.values.is_empty())
                .collect();
            if series.is_empty() {
                continue;
            }
            let all: Vec<f64> = series
                .iter()
                .flat_map(|s| s.values.iter().copied())
                .collect();
            let (mut lo, mut hi) = (
                all.iter().copied().fold(f64::INFINITY, f64::min),
                all.iter().copied().fold(0.0, f64::max),
            );
            if log {
                lo = 10f64.powf(lo.max(0.01).log10().floor());
                hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
            } else {
                lo = 0.0;
                hi = (hi * 1.05).ceil().max(1.0);
            }
            let plot_w = width - left - right;
            let x = |v: f64| -> f64 {
                let f = if log {
                    (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10())
                } else {
                    (v - lo) / (hi - lo)
                };
                left + f.clamp(0.0, 1.0) * plot_w
            };
            let _ = writeln!(
                body,
                r#"<text x="{left}" y="{:.1}" font-weight="bold">{}</text>"#,
                y + 14.0,
                escape(title)
            );
            y += 26.0;
            let top = y;
            for (i, s) in series.iter().enumerate() {
                let cy = y + strip / 2.0;
                if i % 2 == 0 {
                    let _ = writeln!(
                        body,
                        r##"<rect x="0" y="{y:.1}" width="{width}" height="{strip}" fill="#f4f4f4"/>"##
                    );
                }
                let color = match s.side {
                    Side::Ours => "#1f77b4",
                    Side::Peer => "#d62728",
                    Side::Floor => "#7f7f7f",
                };
                let label = format!("{} · {} · {}", s.backend, s.setting, s.tool);
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"#,
                    left - 8.0,
                    cy + 4.0,
                    escape(&label)
                );
                if let (Some(q1), Some(q3)) =
                    (percentile(&s.values, 25.0), percentile(&s.values, 75.0))
                {
                    let _ = writeln!(
                        body,
                        r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.18" stroke="{color}"/>"#,
                        x(q1),
                        cy - 7.0,
                        (x(q3) - x(q1)).max(1.0),
                        14.0
                    );
                }
                for (j, v) in s.values.iter().enumerate() {
                    let jitter = ((j * 7919) % 11) as f64 - 5.0;
                    let _ = writeln!(
                        body,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{color}" fill-opacity="0.7"/>"#,
                        x(*v),
                        cy + jitter * 0.8
                    );
                }
                if let Some(m) = median(&s.values) {
                    let _ = writeln!(
                        body,
                        r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="black" stroke-width="2"/>"#,
                        x(m),
                        cy - 9.0,
                        cy + 9.0
                    );
                }
                y += strip;
            }
            // Axis and ticks.
            let _ = writeln!(
                body,
                r#"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="black"/>"#,
                width - right
            );
            let ticks: Vec<f64> = if log {
                let mut t = Vec::new();
                let mut d = lo;
                while d <= hi * 1.0001 {
                    for m in [1.0, 2.0, 5.0] {
                        if d * m <= hi * 1.0001 {
                            t.push(d * m);
                        }
                    }
                    d *= 10.0;
                }
                t
            } else {
                let step = nice_step(hi / 8.0);
                (0..=((hi / step) as usize))
                    .map(|i| i as f64 * step)
                    .collect()
            };
            for t in ticks {
                let tx = x(t);
                let _ = writeln!(
                    body,
                    r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{top:.1}" y2="{:.1}" stroke="#ccc" stroke-dasharray="2,3"/>"##,
                    y + 4.0
                );
                let _ = writeln!(
                    body,
                    r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                    y + 16.0,
                    trim_number(t)
                );
            }
            y += 34.0;
        }
        let legend_y = y + 4.0;
        let _ = writeln!(
            body,
            r##"<circle cx="{left}" cy="{legend_y}" r="4" fill="#1f77b4"/><text x="{:.1}" y="{:.1}" font-size="11">elect</text><circle cx="{:.1}" cy="{legend_y}" r="4" fill="#d62728"/><text x="{:.1}" y="{:.1}" font-size="11">peer tool</text><circle cx="{:.1}" cy="{legend_y}" r="4" fill="#7f7f7f"/><text x="{:.1}" y="{:.1}" font-size="11">physical floor (delete + watch event)</text><text x="{:.1}" y="{:.1}" font-size="11">bar: median · box: p25–p75 · dots: rounds</text>"##,
            left + 8.0,
            legend_y + 4.0,
            left + 60.0,
            left + 68.0,
            legend_y + 4.0,
            left + 150.0,
            left + 158.0,
            legend_y + 4.0,
            left + 400.0,
            legend_y + 4.0,
        );
        let height = legend_y + 20.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
        out.push_str(&body);
        let _ = writeln!(
            out,
            r##"<text x="8" y="{:.1}" font-size="10" fill="#555">{} · {} × {} · {}</text>"##,
            height - 4.0,
            escape(&self.date),
            self.machine.cpus,
            escape(&self.machine.cpu_model),
            escape(&self.mode)
        );
        out.push_str("</svg>\n");
        out
    }
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let f = raw / magnitude;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn trim_number(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_owned()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::Row;

    #[test]
    fn a_figure_keeps_the_comparison_and_sets_only_its_own_parts() {
        let row = Row::of("herd", "etcd", "etcdctl elect");
        let figure = row.figure("median", "ms", Some(1.0), None);
        assert_eq!(
            (figure.measurement.as_str(), figure.backend.as_str()),
            ("herd", "etcd")
        );
        assert_eq!(figure.peer_tool, "etcdctl elect");
        assert_eq!(
            (figure.what.as_str(), figure.unit.as_str()),
            ("median", "ms")
        );
        assert_eq!((figure.ours, figure.peer), (Some(1.0), None));
        assert_eq!(figure.note, "");
        assert_eq!(figure.note("why").note, "why");
    }
}
