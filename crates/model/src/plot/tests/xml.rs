//! A minimal XML well-formedness checker for the rendered documents, so that the tests need
//! no XML dependency: it accepts an optional declaration, comments, exactly one root element,
//! balanced tags, quoted and unique attributes and only the predefined entities, and returns
//! the elements in document order with their parent, attributes and leading text.

/// An element found by [`elements`]: its name and attributes in document order.
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    /// Text directly inside, up to the next tag (enough for `<text>`, `<title>` and `<desc>`).
    pub text: String,
    /// Index of the enclosing element in the list [`elements`] returns.
    pub parent: Option<usize>,
}
impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn num(&self, name: &str) -> f64 {
        self.attr(name)
            .unwrap_or_else(|| panic!("{} has no {name}", self.name))
            .parse()
            .unwrap()
    }
}

/// Checks that `doc` is well-formed XML: an optional declaration, comments, exactly one root
/// element, balanced tags, quoted and unique attributes, and only known entities. Returns the
/// elements in document order.
pub fn elements(doc: &str) -> Result<Vec<Element>, String> {
    let mut rest = doc;
    if let Some(after) = rest.strip_prefix("<?xml") {
        let end = after.find("?>").ok_or("unterminated XML declaration")?;
        rest = &after[end + 2..];
    }
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut out: Vec<Element> = Vec::new();
    let mut roots = 0;
    loop {
        let lt = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..lt];
        check_text(text)?;
        if stack.is_empty() && !text.trim().is_empty() {
            return Err(format!("text outside the root element: {text:?}"));
        }
        if let Some((_, open)) = stack.last()
            && out[*open].text.is_empty()
        {
            out[*open].text = unescape(text);
        }
        if lt == rest.len() {
            break;
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
            continue;
        }
        let gt = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let (open, _) = stack
                .pop()
                .ok_or_else(|| format!("</{name}> closes nothing"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            continue;
        }
        let (body, self_closing) = match tag.strip_suffix('/') {
            Some(b) => (b, true),
            None => (tag, false),
        };
        let mut element = parse_tag(body)?;
        element.parent = stack.last().map(|(_, i)| *i);
        if stack.is_empty() {
            roots += 1;
            if roots > 1 {
                return Err(format!("second root element <{}>", element.name));
            }
        }
        if !self_closing {
            stack.push((element.name.clone(), out.len()));
        }
        out.push(element);
    }
    if let Some((open, _)) = stack.pop() {
        return Err(format!("<{open}> never closed"));
    }
    if roots != 1 {
        return Err("no root element".into());
    }
    Ok(out)
}

fn parse_tag(body: &str) -> Result<Element, String> {
    let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
    {
        return Err(format!("bad element name in <{body}>"));
    }
    let mut attrs: Vec<(String, String)> = Vec::new();
    let mut rest = body[name_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("attribute without value in <{body}>"))?;
        let attr = rest[..eq].trim();
        if attr.is_empty() || attr.contains(char::is_whitespace) {
            return Err(format!("bad attribute name {attr:?} in <{name}>"));
        }
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let quote = quote.ok_or_else(|| format!("unquoted attribute {attr} in <{name}>"))?;
        let close = after[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated {attr} in <{name}>"))?;
        let value = &after[1..1 + close];
        if value.contains('<') {
            return Err(format!("raw < in attribute {attr} of <{name}>"));
        }
        check_text(value)?;
        if attrs.iter().any(|(n, _)| n == attr) {
            return Err(format!("duplicate attribute {attr} in <{name}>"));
        }
        attrs.push((attr.to_owned(), unescape(value)));
        rest = after[1 + close + 1..].trim_start();
    }
    Ok(Element {
        name: name.to_owned(),
        attrs,
        text: String::new(),
        parent: None,
    })
}

/// Every `&` must start a known entity or a character reference.
fn check_text(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .ok_or_else(|| format!("bare & in {text:?}"))?;
        let entity = &after[..semi];
        let known = ["amp", "lt", "gt", "quot", "apos"].contains(&entity)
            || entity
                .strip_prefix("#x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || entity
                .strip_prefix('#')
                .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
        if !known {
            return Err(format!("unknown entity &{entity}; in {text:?}"));
        }
        rest = &after[semi + 1..];
    }
    Ok(())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[test]
fn checker_rejects_malformed_documents() {
    let cases = [
        ("<svg><g></svg>", false),
        ("<svg><g></g>", false),
        ("<svg a=\"<\"/>", false),
        ("<svg>a & b</svg>", false),
        ("<svg>&nbsp;</svg>", false),
        ("<svg a=1/>", false),
        ("<svg a=\"1\" a=\"2\"/>", false),
        ("<svg/><svg/>", false),
        ("text<svg/>", false),
        (
            "<?xml version=\"1.0\"?>\n<svg a=\"&amp;&#38;\"><!-- <x> --><g/>&lt;</svg>\n",
            true,
        ),
    ];
    for (doc, ok) in cases {
        assert_eq!(elements(doc).is_ok(), ok, "{doc}");
    }
}
