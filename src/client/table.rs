//! Epoch metrics as text for a terminal or a log: the table of `kiln metrics` and `submit
//! --follow`, and the one line per finished epoch that `--follow` prints.
//!
//! Columns are as wide as their widest cell, headers aligned like their numbers (right), under
//! short labels (`test acc` for `test_accuracy`) so a classifier's or a language model's table
//! fits 80 columns. On a terminal narrower than that, whole columns (and, in an epoch line, whole
//! fields) are left out from the right and the table says how many; a pipe or a file gets them
//! all.

use serde_json::Value;

/// The metrics of an epoch row in the order they are shown, with their short labels; any other
/// numeric field comes after them under its own name.
const ORDER: [(&str, &str); 11] = [
    ("train_loss", "train loss"),
    ("train_accuracy", "train acc"),
    ("test_loss", "test loss"),
    ("test_accuracy", "test acc"),
    ("perplexity", "ppl"),
    ("validation_perplexity", "val ppl"),
    ("grad_norm", "grad norm"),
    ("grad_norm_max", "grad max"),
    ("examples_per_sec", "examples/s"),
    ("tokens_per_sec", "tokens/s"),
    ("seconds", "seconds"),
];

/// The width of the terminal standard output is, if it is one.
pub fn terminal_width() -> Option<usize> {
    console::Term::stdout().size_checked().map(|(_, columns)| usize::from(columns))
}

/// A metric's short label: `test acc` for `test_accuracy`; its own name if it has none.
pub fn label(name: &str) -> &str {
    ORDER.iter().find(|(n, _)| *n == name).map_or(name, |(_, l)| l)
}

/// The numeric fields of epoch rows other than `epoch`, in [`ORDER`], each once.
pub fn columns<'a>(rows: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        for (name, value) in row.as_object().into_iter().flatten() {
            if name != "epoch" && value.is_number() && !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let rank = |n: &String| ORDER.iter().position(|(o, _)| o == n).unwrap_or(ORDER.len());
    names.sort_by_key(rank);
    names
}

/// A metric for a table: four decimals below 100, whole numbers above.
pub fn number(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.4}") }
}

/// Epoch rows as lines of a table (a header, then a line per row), at most `width` columns wide.
pub fn epochs_table(rows: &[Value], width: usize) -> Vec<String> {
    let names = columns(rows);
    let mut table = vec![column("epoch", rows.iter().map(|r| r["epoch"].as_u64().unwrap_or(0).to_string()))];
    for name in &names {
        table
            .push(column(label(name), rows.iter().map(|r| r[name].as_f64().map(number).unwrap_or_default())));
    }
    let mut used = 0;
    let shown = table
        .iter()
        .take_while(|c| {
            used += c.width + if used == 0 { 0 } else { SEPARATOR.len() };
            used <= width
        })
        .count()
        .max(1);
    let line = |cell: &dyn Fn(&Column) -> &str| {
        let cells = table[..shown].iter().map(|c| format!("{:>w$}", cell(c), w = c.width));
        cells.collect::<Vec<_>>().join(SEPARATOR)
    };
    let mut lines = vec![line(&|c| c.header.as_str())];
    lines.extend((0..rows.len()).map(|i| line(&|c| c.cells[i].as_str())));
    if shown < table.len() {
        let hidden = table[shown..].iter().map(|c| c.header.as_str()).collect::<Vec<_>>().join(", ");
        lines.push(format!("({} more, too wide for this terminal: {hidden})", table.len() - shown));
    }
    lines
}

const SEPARATOR: &str = "  ";

struct Column {
    header: String,
    cells: Vec<String>,
    width: usize,
}

fn column(header: &str, cells: impl Iterator<Item = String>) -> Column {
    let cells: Vec<String> = cells.collect();
    let width = cells.iter().map(|c| c.chars().count()).chain([header.chars().count()]).max().unwrap_or(0);
    Column { header: header.to_string(), cells, width }
}

/// How a finished epoch's line names its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// As the API does (`train_loss 0.4123`): for logs, where a line is searched for.
    Api,
    /// By their short labels (`train loss 0.4123`): for a terminal.
    Short,
}

/// Which metrics an epoch line keeps first when not all fit: what tells how training goes.
const PRIORITY: [&str; 11] = [
    "test_accuracy",
    "validation_perplexity",
    "perplexity",
    "train_loss",
    "train_accuracy",
    "examples_per_sec",
    "tokens_per_sec",
    "test_loss",
    "grad_norm",
    "grad_norm_max",
    "seconds",
];

/// An epoch row as one line, `epoch 2/5  train_loss 0.4123  test_accuracy 0.8512 ...`, at most
/// `width` characters: the fields that fit, whole, in [`PRIORITY`], shown in table order.
pub fn epoch_line(row: &Value, epochs: u64, names: Names, width: usize) -> String {
    let head = format!("epoch {}/{epochs}", row["epoch"].as_u64().unwrap_or_default());
    let names_in_order = columns([row]);
    let field = |name: &str| {
        let shown = if names == Names::Api { name } else { label(name) };
        format!("{SEPARATOR}{shown} {}", number(row[name].as_f64().unwrap_or(f64::NAN)))
    };
    let rank = |n: &String| PRIORITY.iter().position(|p| p == n).unwrap_or(PRIORITY.len());
    let mut by_priority = names_in_order.clone();
    by_priority.sort_by_key(rank);
    let mut used = head.chars().count();
    let mut kept = Vec::new();
    for name in by_priority {
        let len = field(&name).chars().count();
        if used + len <= width {
            used += len;
            kept.push(name);
        }
    }
    let fields = names_in_order.iter().filter(|n| kept.contains(n)).map(|n| field(n));
    head + &fields.collect::<String>()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn classifier(epoch: u64) -> Value {
        json!({"epoch": epoch, "train_loss": 0.41234, "train_accuracy": 0.85, "test_loss": 0.45,
               "test_accuracy": 0.8312, "examples_per_sec": 12345.6, "seconds": 123.4})
    }

    fn language_model(epoch: u64) -> Value {
        json!({"epoch": epoch, "train_loss": 2.1, "perplexity": 8.16, "validation_perplexity": 9.3,
               "grad_norm": 0.87, "grad_norm_max": 4.2, "tokens_per_sec": 1234567.0, "seconds": 3.2})
    }

    #[test]
    fn tables_of_both_kinds_fit_80_columns_with_headers_over_their_numbers() {
        for rows in [vec![classifier(1), classifier(10)], vec![language_model(1), language_model(10)]] {
            let lines = epochs_table(&rows, 80);
            assert_eq!(lines.len(), 3, "{lines:#?}");
            assert!(lines.iter().all(|l| l.chars().count() <= 80), "{lines:#?}");
            // Every header ends where its column's numbers end.
            let ends = |line: &str| -> Vec<usize> {
                let mut ends = Vec::new();
                let chars: Vec<char> = line.chars().collect();
                for i in 0..chars.len() {
                    if chars[i] != ' ' && chars.get(i + 1).is_none_or(|c| *c == ' ') {
                        ends.push(i);
                    }
                }
                ends
            };
            let header = ends(&lines[0]);
            let columns = 1 + columns(&rows).len();
            for line in &lines[1..] {
                let cells = ends(line);
                assert_eq!(cells.len(), columns, "{line}");
                assert!(cells.iter().all(|e| header.contains(e)), "{lines:#?}");
            }
        }
        let lm = epochs_table(&[language_model(3)], 80);
        assert!(lm[0].contains("val ppl") && lm[0].contains("tokens/s") && lm[1].contains("1234567"));
    }

    #[test]
    fn a_narrow_terminal_leaves_out_whole_columns_and_says_which() {
        let lines = epochs_table(&[classifier(1)], 40);
        assert!(lines[..2].iter().all(|l| l.chars().count() <= 40), "{lines:#?}");
        assert!(lines[0].starts_with("epoch  train loss"), "{lines:#?}");
        assert!(lines[2].contains("examples/s") && lines[2].contains("seconds"), "{lines:#?}");
        assert_eq!(epochs_table(&[classifier(1)], usize::MAX).len(), 2, "nothing left out");
    }

    #[test]
    fn epoch_lines_name_metrics_for_logs_or_fit_a_terminal() {
        let row = classifier(2);
        let log = epoch_line(&row, 5, Names::Api, usize::MAX);
        assert!(log.starts_with("epoch 2/5  train_loss 0.4123  train_accuracy 0.8500"), "{log}");
        assert!(log.ends_with("seconds 123"), "{log}");
        // On 80 columns the test accuracy is kept, in its place, over the test loss.
        let terminal = epoch_line(&row, 5, Names::Short, 80);
        assert_eq!(terminal, "epoch 2/5  train loss 0.4123  train acc 0.8500  test acc 0.8312  seconds 123");
        let narrow = epoch_line(&row, 5, Names::Short, 40);
        assert_eq!(narrow, "epoch 2/5  test acc 0.8312  seconds 123", "{narrow}");
        let lm = epoch_line(&language_model(1), 9, Names::Short, 80);
        assert!(lm.chars().count() <= 80 && lm.contains("ppl 8.1600  val ppl 9.3000"), "{lm}");
    }
}
