//! [`StopMatcher`]: cuts generated text at the first stop string without ever releasing text
//! that might turn out to be the start of one.

/// Streams text through, holding back any tail that could begin a stop string.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    /// Adds `text`; returns the text that is now safe to release and whether a stop string
    /// was found (then the text before it is released and everything after is dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if let Some(pos) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.held.truncate(pos);
            return (std::mem::take(&mut self.held), true);
        }
        // Earliest char boundary whose suffix is a (proper) prefix of some stop string.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep_from);
        (std::mem::replace(&mut self.held, rest), false)
    }

    /// Releases whatever is held back (the text ended without a stop string).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = vec![];
        for p in pieces {
            let (t, hit) = m.push(p);
            out.push(t);
            if hit {
                return (out, true);
            }
        }
        out.push(m.flush());
        (out, false)
    }

    #[test]
    fn holds_back_possible_prefixes_and_cuts_at_the_match() {
        let (out, hit) = run(&["END"], &["ab", "cE", "N", "Dxyz"]);
        assert!(hit);
        assert_eq!(out, ["ab", "c", "", ""]);
        let (out, hit) = run(&["END"], &["ab", "cE", "Nx", "y"]);
        assert!(!hit);
        assert_eq!(out, ["ab", "c", "ENx", "y", ""]);
        assert_eq!(out.concat(), "abcENxy");
    }

    #[test]
    fn earliest_of_several_stops_wins_and_unicode_is_respected() {
        let (out, hit) = run(&["é!", "b"], &["aé", "!b"]);
        assert!(hit);
        assert_eq!(out.concat(), "a");
        let (out, hit) = run(&["\n\n"], &["x\n", "y\n", "\n", "z"]);
        assert!(hit);
        assert_eq!(out.concat(), "x\ny");
        let (out, hit) = run(&[], &["a", "b"]);
        assert!(!hit);
        assert_eq!(out, ["a", "b", ""]);
    }
}
