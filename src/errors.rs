//! How an error is told to an operator: the error, then each cause it carries, each said once
//! (layered errors such as an HTTP client's often repeat their cause's words in their own).

/// `e` and its sources, joined by ": ", a source whose words were already said left out.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !out.contains(&said) {
            out = format!("{out}: {said}");
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot write /x")]
        struct W(#[source] std::io::Error);
        assert_eq!(
            super::chain(&W(std::io::Error::other("disk full"))),
            "cannot write /x: disk full"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("body error: {0}")]
        struct Repeats(#[source] std::io::Error);
        assert_eq!(
            super::chain(&Repeats(std::io::Error::other("timed out"))),
            "body error: timed out"
        );
    }
}
