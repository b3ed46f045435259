//! The classic Prometheus text format 0.0.4, converted from the OpenMetrics 1.0.0 text that
//! `prometheus-client` writes (it writes no other). The two differ where a parser of the older
//! format, such as `promtool check metrics`, trips: a counter's `# HELP` and `# TYPE` name the
//! family *with* its `_total` suffix (OpenMetrics names it without), there is no `# EOF` line,
//! no `# UNIT` line, no `_created` sample and no exemplar, the type `unknown` is `untyped`, and a
//! timestamp counts milliseconds, not seconds. Everything else — sample lines, label escaping,
//! histograms' `_bucket`, `_sum` and `_count` — is the same in both.

use std::collections::HashSet;

/// The exposition `openmetrics` in the classic text format.
pub(super) fn from_openmetrics(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if let Some(line) = convert_line(line, &counters) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// One line in the classic format, or `None` for a line it has no place for.
fn convert_line(line: &str, counters: &HashSet<&str>) -> Option<String> {
    if line.trim().is_empty() {
        return None;
    }
    let Some(comment) = line.strip_prefix('#') else {
        return sample(line, counters);
    };
    let (keyword, rest) = comment.trim_start().split_once(' ').unwrap_or((comment.trim_start(), ""));
    let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
    let name = if counters.contains(name) { format!("{name}_total") } else { name.to_string() };
    match keyword {
        "EOF" | "UNIT" => None,
        "HELP" => Some(format!("# HELP {name} {value}")),
        "TYPE" => Some(format!("# TYPE {name} {}", classic_type(value))),
        _ => Some(line.to_string()),
    }
}

/// The classic format's name of an OpenMetrics type: the four it shares, else `untyped`.
fn classic_type(openmetrics: &str) -> &'static str {
    match openmetrics {
        "counter" => "counter",
        "gauge" => "gauge",
        "histogram" => "histogram",
        "summary" => "summary",
        _ => "untyped",
    }
}

/// A sample line without its exemplar and with its timestamp in milliseconds; `None` for a
/// counter's `_created` sample, which the classic format does not have.
fn sample(line: &str, counters: &HashSet<&str>) -> Option<String> {
    let series_end = series_end(line);
    let (series, rest) = line.split_at(series_end);
    let name = &series[..series.find('{').unwrap_or(series.len())];
    if name.strip_suffix("_created").is_some_and(|family| counters.contains(family)) {
        return None;
    }
    // After the series: ` value [timestamp] [# exemplar]`.
    let rest = rest.split_once(" # ").map_or(rest, |(before, _)| before);
    let mut fields = rest.split_whitespace();
    let (Some(value), timestamp) = (fields.next(), fields.next()) else {
        return Some(line.to_string());
    };
    Some(match timestamp.and_then(|t| t.parse::<f64>().ok()) {
        Some(seconds) => format!("{series} {value} {}", (seconds * 1000.0).round() as i64),
        None => format!("{series} {value}"),
    })
}

/// Where a sample line's series (its name and labels) ends: after the `}` that closes its
/// labels — a quoted label value may hold a `}`, a `#` or an escaped `"` — or at the first space.
fn series_end(line: &str) -> usize {
    let Some(open) = line.find('{').filter(|open| !line[..*open].contains(' ')) else {
        return line.find(' ').unwrap_or(line.len());
    };
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return open + i + 1,
            _ => {}
        }
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = r#"# HELP kiln_requests Requests answered.
# TYPE kiln_requests counter
kiln_requests_total{route="/jobs/{id}",status="200"} 3
kiln_requests_created{route="/jobs/{id}",status="200"} 1700000000.5
# HELP kiln_written_bytes Bytes written.
# TYPE kiln_written_bytes counter
# UNIT kiln_written_bytes bytes
kiln_written_bytes_total 1234 1700000000.25 # {trace="a} # b"} 1.0 1700000000.0
# HELP kiln_rate Examples per second.
# TYPE kiln_rate gauge
kiln_rate{model="lenet_bn",note="a \"quoted\" } # brace"} 4000.5
# HELP kiln_latency_seconds Latency.
# TYPE kiln_latency_seconds histogram
kiln_latency_seconds_sum 0.5
kiln_latency_seconds_count 1
kiln_latency_seconds_bucket{le="0.5"} 1
kiln_latency_seconds_bucket{le="+Inf"} 1
# HELP kiln_thing Something.
# TYPE kiln_thing unknown
kiln_thing 1
# EOF
"#;

    const TEXT: &str = r#"# HELP kiln_requests_total Requests answered.
# TYPE kiln_requests_total counter
kiln_requests_total{route="/jobs/{id}",status="200"} 3
# HELP kiln_written_bytes_total Bytes written.
# TYPE kiln_written_bytes_total counter
kiln_written_bytes_total 1234 1700000000250
# HELP kiln_rate Examples per second.
# TYPE kiln_rate gauge
kiln_rate{model="lenet_bn",note="a \"quoted\" } # brace"} 4000.5
# HELP kiln_latency_seconds Latency.
# TYPE kiln_latency_seconds histogram
kiln_latency_seconds_sum 0.5
kiln_latency_seconds_count 1
kiln_latency_seconds_bucket{le="0.5"} 1
kiln_latency_seconds_bucket{le="+Inf"} 1
# HELP kiln_thing Something.
# TYPE kiln_thing untyped
kiln_thing 1
"#;

    #[test]
    fn openmetrics_becomes_the_classic_text_format() {
        assert_eq!(from_openmetrics(OPENMETRICS), TEXT);
    }

    #[test]
    fn a_series_ends_at_the_brace_that_closes_its_labels() {
        assert_eq!(series_end("up 1"), 2);
        assert_eq!(series_end(r#"up{a="}"} 1"#), 9);
        assert_eq!(series_end(r#"up{a="\"}",b="\\"} 1 # {c="d"} 1"#), 18);
        assert_eq!(series_end("up"), 2);
    }

    #[test]
    fn an_empty_exposition_stays_empty() {
        assert_eq!(from_openmetrics("# EOF\n"), "");
        assert_eq!(from_openmetrics("\n\n# EOF\n"), "");
    }
}
