//! The one validator for text that people and automations send.
//!
//! Every text field of a request DTO is one of these wrappers instead of a
//! bare `String`. They check while deserialising, so JSON bodies, forms and
//! query strings are all refused the same way: 422 naming the field (the
//! extractors in `web::extract` track the path). Messages name the offending
//! character by code point and never echo the value.
//!
//! - [`SingleLine`]: no control characters at all (C0, DEL, C1).
//! - [`MultiLine`]: the same, but tab, newline and carriage return allowed.
//! - [`Name`]: single line, and no bidi override or isolate characters
//!   (U+202A–U+202E, U+2066–U+2069), which can make a name read as another.
//!   Zero-width joiners (emoji sequences, Persian ZWNJ) are kept.
//!
//! Provider data relayed through Plugboard is not input: it is stored as it
//! comes, with [`escape_nul_for_storage`] at the storage boundary because
//! PostgreSQL `text`/`jsonb` can't hold U+0000.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// What a field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    SingleLine,
    MultiLine,
    Name,
}

fn is_control(c: char) -> bool {
    // C0, DEL and C1.
    c.is_control()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Why `text` isn't acceptable as `kind`, or `None`. Never quotes the text.
pub fn problem(text: &str, kind: TextKind) -> Option<String> {
    for c in text.chars() {
        let allowed_control = kind == TextKind::MultiLine && matches!(c, '\t' | '\n' | '\r');
        if is_control(c) && !allowed_control {
            let what = if kind == TextKind::MultiLine {
                "control characters other than tab and newline"
            } else {
                "control characters (it is a single line)"
            };
            return Some(format!(
                "contains U+{:04X}; this field does not accept {what}",
                u32::from(c)
            ));
        }
        if kind == TextKind::Name && is_bidi_control(c) {
            return Some(format!(
                "contains U+{:04X}, a bidirectional override or isolate character, which names may not contain",
                u32::from(c)
            ));
        }
    }
    None
}

/// Checks every string (and object key) in a JSON value sent as input, for
/// the few fields that take free JSON (rule filter values). Returns the JSON
/// pointer below `value` and the problem.
pub fn problem_in_json(value: &Value, kind: TextKind) -> Option<(String, String)> {
    match value {
        Value::String(s) => problem(s, kind).map(|p| (String::new(), p)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| problem_in_json(v, kind).map(|(at, p)| (format!("/{i}{at}"), p))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let key = pointer_token(k);
            if let Some(p) = problem(k, TextKind::SingleLine) {
                return Some((format!("/{key}"), p));
            }
            problem_in_json(v, kind).map(|(at, p)| (format!("/{key}{at}"), p))
        }),
        _ => None,
    }
}

fn pointer_token(key: &str) -> String {
    // A key with a control character is reported by position only.
    if key.chars().any(is_control) {
        return "~key".to_owned();
    }
    key.replace('~', "~0").replace('/', "~1")
}

/// The first `max` characters, with an ellipsis when cut (never inside a
/// character).
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or(text)),
        None => text.to_owned(),
    }
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        /// Tests build DTOs from literals; a bad literal panics there.
        #[cfg(test)]
        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name::parse(text).expect("test literal is valid text")
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl $name {
            /// Checks `text` as this kind of field.
            pub fn parse(text: impl Into<String>) -> Result<Self, String> {
                let text = text.into();
                match problem(&text, $kind) {
                    Some(p) => Err(p),
                    None => Ok($name(text)),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(text).map_err(serde::de::Error::custom)
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

text_type!(
    /// One line of text: emails, ids, filter values, keys, tokens.
    SingleLine,
    TextKind::SingleLine
);
text_type!(
    /// Free text over several lines: tab and newline allowed.
    MultiLine,
    TextKind::MultiLine
);
text_type!(
    /// A name people read (user, workspace, organization, key): one line,
    /// no bidi overrides or isolates.
    Name,
    TextKind::Name
);

/// Free JSON sent as input (run summaries, metadata): every string and key
/// is checked as [`MultiLine`] text; the error names the JSON pointer.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct JsonText(Value);

/// Documented as a free-form JSON object.
impl utoipa::PartialSchema for JsonText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new().into()
    }
}

impl utoipa::ToSchema for JsonText {}

impl JsonText {
    pub fn into_inner(self) -> Value {
        self.0
    }
}

impl Deref for JsonText {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        match problem_in_json(&value, TextKind::MultiLine) {
            Some((at, p)) if at.is_empty() => Err(serde::de::Error::custom(p)),
            Some((at, p)) => Err(serde::de::Error::custom(format!("at {at}: {p}"))),
            None => Ok(JsonText(value)),
        }
    }
}

/// The fields of an urlencoded form that repeats names (checkboxes, one
/// `header:<name>` per header), in order. Names and values are single lines;
/// a bad value is reported under its field name.
#[derive(Debug, Clone, Default)]
pub struct FormFields(Vec<(SingleLine, SingleLine)>);

impl FormFields {
    /// The first value of `name`.
    pub fn first(&self, name: &str) -> Option<&SingleLine> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SingleLine> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

impl Deref for FormFields {
    type Target = [(SingleLine, SingleLine)];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'de> Deserialize<'de> for FormFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = FormFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("form fields")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FormFields, A::Error> {
                let mut fields = Vec::new();
                // Values are read one by one so a failure names its field.
                while let Some(name) = map.next_key::<SingleLine>()? {
                    let value = map.next_value::<SingleLine>()?;
                    fields.push((name, value));
                }
                Ok(FormFields(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A field of a partial update: absent (keep), `null` (clear) or a value.
/// Use with `#[serde(default)]` so an absent key is [`Patch::Keep`].
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Patch::Clear,
            Some(value) => Patch::Set(value),
        })
    }
}

/// The text PostgreSQL stores in place of U+0000, which `text` and `jsonb`
/// can't hold. It is what the character looks like escaped in JSON.
pub const ESCAPED_NUL: &str = "\\u0000";

/// Makes provider data storable on both databases: every U+0000 in strings
/// and object keys becomes the six characters `\u0000`. Everything else is
/// kept as the provider sent it. Use where provider data is written.
pub fn escape_nul_for_storage(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = escape_nul_in_text(s),
        Value::Array(items) => items.iter_mut().for_each(escape_nul_for_storage),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    escape_nul_for_storage(&mut v);
                    map.insert(escape_nul_in_text(&k), v);
                }
            } else {
                map.values_mut().for_each(escape_nul_for_storage);
            }
        }
        _ => {}
    }
}

/// [`escape_nul_for_storage`] for one provider string (an account name, an id).
pub fn escape_nul_in_text(text: &str) -> String {
    text.replace('\0', ESCAPED_NUL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_line_refuses_every_control_character() {
        for bad in [
            "a\0b",
            "a\tb",
            "a\nb",
            "a\rb",
            "\u{1b}[31m",
            "a\u{7f}",
            "a\u{85}",
            "a\u{9f}",
        ] {
            assert!(SingleLine::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            SingleLine::parse("plain ü ✓").unwrap().as_str(),
            "plain ü ✓"
        );
    }

    #[test]
    fn multi_line_allows_tab_and_newline_only() {
        assert!(MultiLine::parse("a\tb\r\nc\n").is_ok());
        for bad in ["a\0b", "a\u{7}b", "a\u{7f}", "a\u{90}"] {
            assert!(MultiLine::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_refuse_bidi_controls_and_keep_joiners() {
        for bad in [
            "\u{202E}evil",
            "a\u{202A}",
            "a\u{2066}b",
            "a\u{2069}",
            "a\nb",
            "a\0",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "👩\u{200D}💻 Team",
            "می\u{200C}خواهم",
            "Zoë O'Brien",
            "東京",
        ] {
            assert_eq!(Name::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn messages_never_echo_the_value() {
        let err = Name::parse("secret-ish\u{202E}value").unwrap_err();
        assert!(err.contains("U+202E"), "{err}");
        assert!(!err.contains("secret-ish"), "{err}");
    }

    #[test]
    fn deserialising_validates() {
        #[derive(Deserialize)]
        struct Body {
            #[allow(dead_code)]
            name: Name,
        }
        assert!(serde_json::from_str::<Body>(r#"{"name":"ok"}"#).is_ok());
        let err = serde_json::from_str::<Body>(r#"{"name":"a\u0000"}"#)
            .err()
            .unwrap();
        assert!(err.is_data(), "{err}");
    }

    #[test]
    fn json_values_are_checked_with_a_pointer() {
        assert_eq!(
            problem_in_json(&json!({"a": [1, "x"]}), TextKind::SingleLine),
            None
        );
        let (at, _) = problem_in_json(&json!({"a": [1, "x\u{0}"]}), TextKind::SingleLine).unwrap();
        assert_eq!(at, "/a/1");
    }

    #[test]
    fn nul_is_escaped_for_storage_and_nothing_else_changes() {
        let mut v = json!({"name": "a\u{0}b", "k\u{0}": ["\u{0}", 1, "tab\there"], "x": null});
        escape_nul_for_storage(&mut v);
        assert_eq!(
            v,
            json!({"name": "a\\u0000b", "k\\u0000": ["\\u0000", 1, "tab\there"], "x": null})
        );
    }
}
