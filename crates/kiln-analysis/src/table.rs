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
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |r: &[String]| -> String {
            let cells: Vec<String> = (0..cols)
                .map(|i| {
                    let c = r.get(i).map(String::as_str).unwrap_or("");
                    if i == 0 {
                        format!("{c:<w$}", w = width[i])
                    } else {
                        format!("{c:>w$}", w = width[i])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        };
        let mut out = format!("{}\n", self.title);
        out.push_str(&line(&self.header));
        out.push('\n');
        out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * cols.saturating_sub(1)));
        out.push('\n');
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
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
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
    let mut i = 0;
    while v.abs() >= 1000.0 && i + 1 < PREFIX.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.2}")
    } else {
        format!("{v:.2} {}", PREFIX[i])
    }
}

/// Bytes in binary units: `"72.00 MiB"`.
pub(crate) fn bytes(x: u64) -> String {
    const UNIT: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = x as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNIT.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{x} B")
    } else {
        format!("{v:.2} {}", UNIT[i])
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
