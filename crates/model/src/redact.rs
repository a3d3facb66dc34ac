//! Shared access signatures out of text that is shown: store errors print request URIs, and a
//! SAS-bearing URI carries its `sig=` credential.

/// `text` with every SAS signature (`sig=...`) replaced: HTTP client errors print request
/// URIs, and with a SAS those carry the credential.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sig=") {
        let start = i + "sig=".len();
        out.push_str(&rest[..start]);
        out.push_str("REDACTED");
        let end = rest[start..]
            .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'')
            .map_or(rest.len(), |e| start + e);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
