//! Series built for a scrape or the refresher (per task, per container, per service), written straight into
//! the text exposition format: one family's `# HELP`/`# TYPE` once, its series after. Building
//! the client library's protobuf families for thousands of series cost more than reading them.

use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: &'static str,
    body: String,
}

/// Metric families under construction, by name.
#[derive(Debug, Default)]
pub struct Families {
    map: BTreeMap<String, Family>,
    labels: LabelText,
}

/// The last label set written, escaped: a task's or container's series come one after
/// another with the same labels, and comparing them is far cheaper than escaping them again.
#[derive(Debug, Default)]
struct LabelText {
    pairs: Vec<(String, String)>,
    text: String,
}

impl LabelText {
    fn of(&mut self, labels: &[(&str, &str)]) -> &str {
        let same = self.pairs.len() == labels.len()
            && self
                .pairs
                .iter()
                .zip(labels)
                .all(|((k, v), (lk, lv))| k == lk && v == lv);
        if !same {
            self.pairs = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.text.clear();
            for (i, (k, val)) in labels.iter().enumerate() {
                self.text.push(if i == 0 { '{' } else { ',' });
                self.text.push_str(k);
                self.text.push_str("=\"");
                escape_into(&mut self.text, val);
                self.text.push('"');
            }
            if !labels.is_empty() {
                self.text.push('}');
            }
        }
        &self.text
    }
}

impl Families {
    fn add(
        &mut self,
        name: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        let Families { map, labels: memo } = self;
        if !map.contains_key(name) {
            let family = Family {
                help,
                kind,
                body: String::new(),
            };
            map.insert(name.to_string(), family);
        }
        let Some(family) = map.get_mut(name) else {
            return;
        };
        let body = &mut family.body;
        body.push_str(name);
        body.push_str(memo.of(labels));
        // Writing to a String cannot fail.
        let _ = writeln!(body, " {}", Value(v));
    }

    pub fn counter(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.add(name, help, "counter", labels, v)
    }

    pub fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.add(name, help, "gauge", labels, v)
    }

    /// Appends every family in the text format, sorted by name.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        let mut text = String::new();
        for (name, f) in &self.map {
            let _ = writeln!(
                text,
                "# HELP {name} {}",
                f.help.replace('\\', "\\\\").replace('\n', "\\n")
            );
            let _ = writeln!(text, "# TYPE {name} {}", f.kind);
            text.push_str(&f.body);
        }
        out.extend_from_slice(text.as_bytes());
    }

    #[cfg(test)]
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        self.write_text(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: integers without a fraction, infinities as `+Inf`/`-Inf`.
struct Value(f64);

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            // Most samples are whole numbers (bytes, counts): written as integers, which is
            // far cheaper than the shortest-float algorithm and prints the same digits.
            v if v.fract() == 0.0 && v.abs() < 9.0e15 => write!(f, "{}", v as i64),
            v => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_once_each_with_escaped_labels_and_plain_numbers() {
        let mut f = Families::default();
        f.counter(
            "b_total",
            "B.",
            &[("task_id", "t1"), ("name", "a\"b\\c\nd")],
            2.5,
        );
        f.gauge("a_bytes", "A.", &[], 33554432.0);
        f.counter("b_total", "B.", &[("task_id", "t2")], f64::INFINITY);
        assert_eq!(
            f.text(),
            "# HELP a_bytes A.\n# TYPE a_bytes gauge\na_bytes 33554432\n\
             # HELP b_total B.\n# TYPE b_total counter\n\
             b_total{task_id=\"t1\",name=\"a\\\"b\\\\c\\nd\"} 2.5\nb_total{task_id=\"t2\"} +Inf\n"
        );
    }
}
