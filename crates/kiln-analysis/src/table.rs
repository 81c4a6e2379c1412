//! Plain-text tables and number formatting for the reports: first column left-aligned, the
//! others right-aligned, exact integers with thousands separators next to SI-prefixed values.

/// A titled table of string cells.
#[derive(Clone, Debug, Default)]
pub(crate) struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with a title line and column headers.
    pub(crate) fn new(title: &str, header: &[&str]) -> Table {
        Table { title: title.to_string(), header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    /// Appends a row (missing cells are blank).
    pub(crate) fn row(&mut self, cells: &[String]) {
        self.rows.push(cells.to_vec());
    }

    /// The table as text: title, header, a rule, the rows.
    pub(crate) fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).chain([self.header.len()]).max().unwrap_or(0);
        let mut width = vec![0usize; cols];
        for r in self.rows.iter().chain([&self.header]) {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |r: &[String]| -> String {
            let cells: Vec<String> = width
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let c = r.get(i).map(String::as_str).unwrap_or("");
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        };
        let rule = width.iter().sum::<usize>().saturating_add(2 * cols.saturating_sub(1));
        let mut out = format!("{}\n{}\n{}\n", self.title, line(&self.header), "-".repeat(rule));
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// `1234567` → `"1,234,567"`.
pub(crate) fn int(x: u128) -> String {
    let s = x.to_string();
    let n = s.chars().count();
    let mut out = String::with_capacity(n + n / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (n - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `1.2444e8` → `"124.44 M"` (k, M, G, T, P, E, Z, Y; plain below 1000).
pub(crate) fn si(x: f64) -> String {
    const PREFIX: [&str; 9] = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
    if !x.is_finite() {
        return x.to_string();
    }
    let mut v = x;
    let mut prefix = PREFIX.iter();
    let mut unit = prefix.next().copied().unwrap_or("");
    while v.abs() >= 1000.0 {
        match prefix.next() {
            Some(p) => {
                v /= 1000.0;
                unit = p;
            }
            None => break,
        }
    }
    if unit.is_empty() {
        format!("{v:.2}")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// Bytes in binary units: `"72.00 MiB"`.
pub(crate) fn bytes(x: u64) -> String {
    const UNIT: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = x as f64;
    let mut units = UNIT.iter();
    let mut unit = units.next().copied().unwrap_or("B");
    while v >= 1024.0 {
        match units.next() {
            Some(u) => {
                v /= 1024.0;
                unit = u;
            }
            None => break,
        }
    }
    if unit == "B" {
        format!("{x} B")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// `part / whole` as `"12.3 %"` (blank when `whole` is 0).
pub(crate) fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1} %", 100.0 * part / whole)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(int(124439808), "124,439,808");
        assert_eq!(int(12), "12");
        assert_eq!(si(124439808.0), "124.44 M");
        assert_eq!(bytes(75497472), "72.00 MiB");
        let mut t = Table::new("T", &["a", "bb"]);
        t.row(&["x".into(), "1".into()]);
        assert_eq!(t.render(), "T\na  bb\n-----\nx   1\n");
    }
}
