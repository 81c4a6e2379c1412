//! JSON Schema → regular expression, for constrained decoding (Willard & Louf 2023, as Outlines
//! does): the JSON texts a schema accepts, for the schemas that describe a regular language, as
//! one regex that [`crate::RegexConstraint`] turns into a token mask.
//!
//! Supported: `type` `object` (its `properties` in schema order; every `required` one always,
//! the others optional), `array` (`items`, `minItems`, `maxItems`), `string` (`minLength`,
//! `maxLength`, `pattern`, `format` `date`/`time`/`date-time`/`uuid`), `integer`, `number`,
//! `boolean`, `null`, a list of types; `enum`, `const`, `anyOf`/`oneOf`, and `$ref` into
//! `#/$defs` or `#/definitions` (not recursive: recursion is not regular). Between tokens at most
//! one space is allowed, as a compact JSON writer puts them (small models otherwise tend to fill
//! the budget with whitespace). Anything else is an error naming the keyword.

use kiln_core::{Error, Result};
use serde_json::Value;

/// A JSON string: unescaped characters other than `"`, `\` and controls, or escapes.
const STRING_CHAR: &str = r#"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})"#;
const INTEGER: &str = r"-?(?:0|[1-9][0-9]*)";
const NUMBER: &str = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?";
/// Optional whitespace between tokens.
const WS: &str = "[ ]?";
/// `$ref` chains deeper than this are taken as recursion.
const MAX_DEPTH: usize = 32;

fn bad(msg: String) -> Error {
    Error::Invalid { op: "json_schema", msg }
}

/// The regex of the JSON texts `schema` accepts (see the module docs).
pub fn schema_to_regex(schema: &Value) -> Result<String> {
    Converter { root: schema }.value(schema, 0)
}

struct Converter<'a> {
    root: &'a Value,
}

/// `x` as a regex literal (its metacharacters escaped).
fn lit(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    for c in x.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn alt(parts: &[String]) -> String {
    format!("(?:{})", parts.join("|"))
}

fn count(v: &Value, key: &str) -> Result<Option<usize>> {
    match v.get(key) {
        None => Ok(None),
        Some(n) => {
            n.as_u64().map(|n| Some(n as usize)).ok_or_else(|| bad(format!("{key} must be a whole number: {n}")))
        }
    }
}

/// `{min,max}` repetition of `item` separated by `sep`, as a regex.
fn repeat(item: &str, sep: &str, min: usize, max: Option<usize>) -> Result<String> {
    if max.is_some_and(|m| m < min) {
        return Err(bad(format!("a maximum count {max:?} below the minimum {min}")));
    }
    let more = |lo: usize, hi: Option<usize>| match hi {
        Some(h) => format!("(?:{sep}{item}){{{lo},{h}}}"),
        None => format!("(?:{sep}{item}){{{lo},}}"),
    };
    Ok(match (min, max) {
        (_, Some(0)) => String::new(),
        (0, hi) => format!("(?:{item}{})?", more(0, hi.map(|h| h - 1))),
        (lo, hi) => format!("{item}{}", more(lo - 1, hi.map(|h| h - 1))),
    })
}

impl Converter<'_> {
    fn value(&self, s: &Value, depth: usize) -> Result<String> {
        if depth > MAX_DEPTH {
            return Err(bad("$ref nesting too deep (recursive schemas are not regular)".into()));
        }
        match s {
            Value::Bool(true) => return Err(bad("`true` (any JSON value) is not regular; give a type".into())),
            Value::Bool(false) => return Err(bad("`false` accepts nothing".into())),
            Value::Object(_) => {}
            other => return Err(bad(format!("a schema must be an object, not {other}"))),
        }
        if let Some(r) = s.get("$ref") {
            return self.value(self.resolve(r)?, depth + 1);
        }
        if let Some(c) = s.get("const") {
            return Ok(lit(&c.to_string()));
        }
        if let Some(e) = s.get("enum") {
            let opts = e.as_array().ok_or_else(|| bad("enum must be a list".into()))?;
            return Ok(alt(&opts.iter().map(|o| lit(&o.to_string())).collect::<Vec<_>>()));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = s.get(key) {
                let list = list.as_array().ok_or_else(|| bad(format!("{key} must be a list")))?;
                return Ok(alt(&list.iter().map(|x| self.value(x, depth + 1)).collect::<Result<Vec<_>>>()?));
            }
        }
        if let Some(k) = ["allOf", "not", "if", "patternProperties"].iter().find(|k| s.get(**k).is_some()) {
            return Err(bad(format!("`{k}` is not supported")));
        }
        match s.get("type") {
            Some(Value::String(t)) => self.typed(s, t, depth),
            Some(Value::Array(ts)) => {
                let parts = ts
                    .iter()
                    .map(|t| {
                        t.as_str().ok_or_else(|| bad(format!("bad type {t}"))).and_then(|t| self.typed(s, t, depth))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(alt(&parts))
            }
            Some(t) => Err(bad(format!("bad type {t}"))),
            None if s.get("properties").is_some() => self.typed(s, "object", depth),
            None => Err(bad(format!("a schema without a type, enum, const or $ref: {s}"))),
        }
    }

    fn resolve(&self, r: &Value) -> Result<&Value> {
        let path = r.as_str().ok_or_else(|| bad(format!("$ref must be a string: {r}")))?;
        let rest = path.strip_prefix("#/").ok_or_else(|| bad(format!("$ref {path:?}: only local refs (#/…)")))?;
        rest.split('/')
            .try_fold(self.root, |v, key| v.get(key.replace("~1", "/").replace("~0", "~")))
            .ok_or_else(|| bad(format!("$ref {path:?} points at nothing")))
    }

    fn typed(&self, s: &Value, t: &str, depth: usize) -> Result<String> {
        Ok(match t {
            "string" => self.string(s)?,
            "integer" => INTEGER.to_string(),
            "number" => NUMBER.to_string(),
            "boolean" => "(?:true|false)".to_string(),
            "null" => "null".to_string(),
            "array" => {
                let item = match s.get("items") {
                    Some(i) => self.value(i, depth + 1)?,
                    None => return Err(bad("an array needs `items` (any JSON value is not regular)".into())),
                };
                let body =
                    repeat(&item, &format!("{WS},{WS}"), count(s, "minItems")?.unwrap_or(0), count(s, "maxItems")?)?;
                format!(r"\[{WS}{body}{WS}\]")
            }
            "object" => self.object(s, depth)?,
            other => return Err(bad(format!("unknown type {other:?}"))),
        })
    }

    fn string(&self, s: &Value) -> Result<String> {
        if let Some(p) = s.get("pattern") {
            let p = p.as_str().ok_or_else(|| bad("pattern must be a string".into()))?;
            let p = p.strip_prefix('^').unwrap_or(p);
            let p = p.strip_suffix('$').unwrap_or(p);
            return Ok(format!(r#""(?:{p})""#));
        }
        if let Some(f) = s.get("format").and_then(Value::as_str) {
            let date = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])";
            let time = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?";
            let body = match f {
                "date" => date.to_string(),
                "time" => time.to_string(),
                "date-time" => format!("{date}T{time}"),
                "uuid" => "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}".to_string(),
                other => return Err(bad(format!("string format {other:?} is not supported"))),
            };
            return Ok(format!("\"{body}\""));
        }
        let (min, max) = (count(s, "minLength")?.unwrap_or(0), count(s, "maxLength")?);
        if max.is_some_and(|m| m < min) {
            return Err(bad(format!("maxLength {max:?} below minLength {min}")));
        }
        let reps = match max {
            Some(m) => format!("{{{min},{m}}}"),
            None if min == 0 => "*".to_string(),
            None => format!("{{{min},}}"),
        };
        Ok(format!("\"{STRING_CHAR}{reps}\""))
    }

    fn object(&self, s: &Value, depth: usize) -> Result<String> {
        let empty = serde_json::Map::new();
        let props = match s.get("properties") {
            Some(Value::Object(p)) => p,
            Some(p) => return Err(bad(format!("properties must be an object: {p}"))),
            None => &empty,
        };
        if props.is_empty() {
            return Err(bad("an object needs `properties` (free-form objects are not regular)".into()));
        }
        let required: Vec<&str> = match s.get("required") {
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            Some(r) => return Err(bad(format!("required must be a list: {r}"))),
            None => vec![],
        };
        if let Some(r) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(bad(format!("required property {r:?} is not among the properties")));
        }
        let members: Vec<(String, bool)> = props
            .iter()
            .map(|(k, v)| {
                let key = lit(&Value::String(k.clone()).to_string());
                Ok((format!("{key}{WS}:{WS}{}", self.value(v, depth + 1)?), required.contains(&k.as_str())))
            })
            .collect::<Result<_>>()?;
        // Members in schema order, separated by commas: the body is the alternatives by which
        // member comes first; a member after the first carries its comma, optional ones as
        // optional groups.
        let sep = format!("{WS},{WS}");
        let mut firsts = vec![];
        for (i, (m, req)) in members.iter().enumerate() {
            let rest: String = members[i + 1..]
                .iter()
                .map(|(m, r)| if *r { format!("{sep}{m}") } else { format!("(?:{sep}{m})?") })
                .collect();
            firsts.push(format!("{m}{rest}"));
            if *req {
                break; // a required member cannot be skipped: no later member comes first
            }
        }
        let any_required = members.iter().any(|(_, r)| *r);
        let body = alt(&firsts);
        let body = if any_required { body } else { format!("{body}?") };
        Ok(format!(r"\{{{WS}{body}{WS}\}}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::schema_to_regex;
    use serde_json::json;

    fn accepts(schema: &serde_json::Value, text: &str) -> bool {
        let re = regex_automata::meta::Regex::new(&format!("^(?:{})$", schema_to_regex(schema).unwrap())).unwrap();
        re.is_match(text)
    }

    #[test]
    fn objects_with_required_and_optional_members() {
        let s = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 8},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                "ok": {"type": "boolean"}
            },
            "required": ["name", "ok"]
        });
        for good in [
            r#"{"name":"Ann","ok":true}"#,
            r#"{ "name" : "Ann", "age": 31, "tags": ["a", "b"], "ok": false }"#,
            r#"{"name":"","tags":[],"ok":true}"#,
            r#"{"name":"a\"b\u00e9","age":-4,"ok":false}"#,
        ] {
            assert!(accepts(&s, good), "{good}");
        }
        for badtext in [
            r#"{"ok":true}"#,                                 // name is required
            r#"{"name":"Ann"}"#,                              // ok is required
            r#"{"name":"Ann","ok":true,}"#,                   // trailing comma
            r#"{"ok":true,"name":"Ann"}"#,                    // schema order
            r#"{"name":"too long name","ok":true}"#,          // maxLength
            r#"{"name":"A","age":01,"ok":true}"#,             // leading zero
            r#"{"name":"A","tags":["a","b","a"],"ok":true}"#, // maxItems
            r#"{"name":"A","tags":["c"],"ok":true}"#,         // enum
        ] {
            assert!(!accepts(&s, badtext), "{badtext}");
        }
    }

    #[test]
    fn refs_unions_formats_and_numbers() {
        let s = json!({
            "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}},
            "type": "object",
            "properties": {
                "at": {"$ref": "#/$defs/point"},
                "when": {"type": "string", "format": "date"},
                "id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "kind": {"const": "pt"}
            },
            "required": ["at", "when", "id", "kind"]
        });
        assert!(accepts(&s, r#"{"at":{"x":1.5,"y":-2e3},"when":"2024-02-29","id":null,"kind":"pt"}"#));
        assert!(accepts(&s, r#"{"at":{"x":0,"y":1},"when":"1999-12-31","id":7,"kind":"pt"}"#));
        assert!(!accepts(&s, r#"{"at":{"x":0,"y":1},"when":"1999-13-31","id":7,"kind":"pt"}"#));
        assert!(!accepts(&s, r#"{"at":{"x":0},"when":"1999-12-31","id":7,"kind":"pt"}"#));
        assert!(!accepts(&s, r#"{"at":{"x":0,"y":1},"when":"1999-12-31","id":7,"kind":"pq"}"#));
        // No member required: the empty object, or any in-order subset.
        let o = json!({"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}});
        for good in ["{}", r#"{"a":1}"#, r#"{"b":2}"#, r#"{"a":1,"b":2}"#] {
            assert!(accepts(&o, good), "{good}");
        }
        assert!(!accepts(&o, r#"{"b":2,"a":1}"#));
    }

    #[test]
    fn unsupported_schemas_are_named_errors() {
        for (s, what) in [
            (json!({"type": "object"}), "properties"),
            (json!({"type": "array"}), "items"),
            (json!({"type": "string", "format": "email"}), "email"),
            (json!({"allOf": []}), "allOf"),
            (json!({"$ref": "#/$defs/missing"}), "points at nothing"),
            (json!({"$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}), "recursive"),
            (json!(true), "not regular"),
            (json!({"type": "string", "minLength": 3, "maxLength": 2}), "maxLength"),
        ] {
            let e = schema_to_regex(&s).unwrap_err().to_string();
            assert!(e.contains(what), "{s}: {e}");
        }
    }
}
