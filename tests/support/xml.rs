//! A tiny XML reader for tests: enough to parse TwiML back (elements,
//! attributes, text, the five predefined entities and numeric references).
//! Shared by the unit tests of `routing::twiml` and by `tests/routing.rs`.
#![allow(dead_code)]

/// One element.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Tag name.
    pub name: String,
    /// Attributes in document order.
    pub attrs: Vec<(String, String)>,
    /// Child elements.
    pub children: Vec<Node>,
    /// Concatenated text directly inside this element.
    pub text: String,
}

impl Node {
    /// An attribute's value.
    pub fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// The first descendant (or self) named `name`, depth first.
    pub fn find(&self, name: &str) -> Option<&Node> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// Every descendant (or self) named `name`, depth first.
    pub fn find_all<'a>(&'a self, name: &str, out: &mut Vec<&'a Node>) {
        if self.name == name {
            out.push(self);
        }
        for c in &self.children {
            c.find_all(name, out);
        }
    }

    /// Names of the direct children, in order.
    pub fn child_names(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after.find(';').ok_or("unterminated entity")?;
        let ent = &after[..j];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or("bad reference")?,
            e if e.starts_with('#') => e[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or("bad reference")?,
            e => return Err(format!("unknown entity &{e};")),
        };
        out.push(c);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse a document with one root element (an XML declaration may lead).
pub fn parse(doc: &str) -> Result<Node, String> {
    let mut s = doc.trim();
    if s.starts_with("<?xml") {
        let end = s.find("?>").ok_or("unterminated declaration")?;
        s = s[end + 2..].trim_start();
    }
    let (node, rest) = element(s)?;
    if !rest.trim().is_empty() {
        return Err(format!("trailing content: {rest:?}"));
    }
    Ok(node)
}

fn element(s: &str) -> Result<(Node, &str), String> {
    let s = s.strip_prefix('<').ok_or("expected <")?;
    let name_end = s
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .ok_or("unterminated tag")?;
    let name = s[..name_end].to_string();
    if name.is_empty() {
        return Err("empty tag name".into());
    }
    let mut s = &s[name_end..];
    let mut attrs = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix("/>") {
            return Ok((
                Node {
                    name,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                },
                r,
            ));
        }
        if let Some(r) = s.strip_prefix('>') {
            s = r;
            break;
        }
        let eq = s.find('=').ok_or("attribute without =")?;
        let key = s[..eq].trim().to_string();
        let r = s[eq + 1..].trim_start();
        let r = r
            .strip_prefix('"')
            .ok_or("attribute value must be double-quoted")?;
        let end = r.find('"').ok_or("unterminated attribute")?;
        let raw = &r[..end];
        if raw.contains('<') {
            return Err("raw < in attribute".into());
        }
        attrs.push((key, unescape(raw)?));
        s = &r[end + 1..];
    }
    let mut children = Vec::new();
    let mut text = String::new();
    loop {
        let lt = s.find('<').ok_or(format!("unclosed <{name}>"))?;
        text.push_str(&unescape(&s[..lt])?);
        s = &s[lt..];
        if let Some(r) = s.strip_prefix("</") {
            let end = r.find('>').ok_or("unterminated end tag")?;
            if r[..end].trim() != name {
                return Err(format!("</{}> closes <{name}>", &r[..end]));
            }
            return Ok((
                Node {
                    name,
                    attrs,
                    children,
                    text,
                },
                &r[end + 1..],
            ));
        }
        let (child, r) = element(s)?;
        children.push(child);
        s = r;
    }
}
