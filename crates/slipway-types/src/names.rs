//! Validation of user-supplied names and Heroku-style generated app names.

use rand::seq::SliceRandom;
use rand::Rng;

/// Heroku's app name rule: a lowercase letter, then lowercase letters, digits and dashes,
/// 3 to 30 characters in all (Heroku refuses names shorter than 3).
pub fn validate_app_name(name: &str) -> Result<(), String> {
    let ok_len = (3..=30).contains(&name.len());
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok_len && first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "Name {name:?} is invalid. It must start with a lowercase letter, contain only lowercase letters, \
             digits and dashes, and be between 3 and 30 characters long."
        ))
    }
}

/// Config var keys: letters, digits and underscores, not starting with a digit (what a POSIX shell
/// can export). Keys Slipway sets for every dyno itself (`PORT`, `DYNO`) are refused.
pub fn validate_config_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !(first_ok && rest_ok) || key.len() > 256 {
        return Err(format!(
            "Invalid config var name {key:?}: use letters, digits and underscores, not starting with a digit."
        ));
    }
    if key == "PORT" || key == "DYNO" {
        return Err(format!(
            "{key} is set by Slipway for every dyno and cannot be changed."
        ));
    }
    Ok(())
}

/// Process type names (`web`, `worker`, `clock`...): letters, digits, `_` and `-`, up to 63 chars.
pub fn validate_process_type(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid process type {name:?}: use letters, digits, dashes and underscores."
        ))
    }
}

const ADJECTIVES: &[&str] = &[
    "aged",
    "ancient",
    "autumn",
    "billowing",
    "bitter",
    "black",
    "blue",
    "bold",
    "broad",
    "calm",
    "cold",
    "cool",
    "crimson",
    "curly",
    "damp",
    "dark",
    "dawn",
    "delicate",
    "divine",
    "dry",
    "empty",
    "falling",
    "fancy",
    "flat",
    "floral",
    "fragrant",
    "frosty",
    "gentle",
    "green",
    "hidden",
    "holy",
    "icy",
    "jolly",
    "late",
    "lingering",
    "little",
    "lively",
    "long",
    "lucky",
    "misty",
    "morning",
    "muddy",
    "nameless",
    "noisy",
    "odd",
    "old",
    "orange",
    "patient",
    "plain",
    "polished",
    "proud",
    "purple",
    "quiet",
    "rapid",
    "raspy",
    "red",
    "restless",
    "rough",
    "round",
    "royal",
    "shiny",
    "shrill",
    "shy",
    "silent",
    "small",
    "snowy",
    "soft",
    "solitary",
    "sparkling",
    "spring",
    "square",
    "steep",
    "still",
    "summer",
    "sweet",
    "throbbing",
    "tight",
    "tiny",
    "twilight",
    "wandering",
    "weathered",
    "white",
    "wild",
    "winter",
    "wispy",
    "withered",
    "yellow",
    "young",
];
const NOUNS: &[&str] = &[
    "art",
    "band",
    "bar",
    "base",
    "bird",
    "block",
    "boat",
    "bonus",
    "bread",
    "breeze",
    "brook",
    "bush",
    "butterfly",
    "cake",
    "cell",
    "cherry",
    "cloud",
    "credit",
    "darkness",
    "dawn",
    "dew",
    "disk",
    "dream",
    "dust",
    "feather",
    "field",
    "fire",
    "firefly",
    "flower",
    "fog",
    "forest",
    "frog",
    "frost",
    "glade",
    "glitter",
    "grass",
    "hall",
    "hat",
    "haze",
    "heart",
    "hill",
    "king",
    "lab",
    "lake",
    "leaf",
    "limit",
    "math",
    "meadow",
    "mode",
    "moon",
    "morning",
    "mountain",
    "mouse",
    "mud",
    "night",
    "paper",
    "pine",
    "poetry",
    "pond",
    "queen",
    "rain",
    "recipe",
    "resonance",
    "rice",
    "river",
    "salad",
    "scene",
    "sea",
    "shadow",
    "shape",
    "silence",
    "sky",
    "smoke",
    "snow",
    "snowflake",
    "sound",
    "star",
    "sun",
    "sunset",
    "surf",
    "term",
    "thunder",
    "tooth",
    "tree",
    "truth",
    "union",
    "unit",
    "violet",
    "voice",
    "water",
    "waterfall",
    "wave",
    "wildflower",
    "wind",
    "wood",
];

/// A Heroku-style generated name such as `shrouded-sands-48213`.
pub fn generate_app_name() -> String {
    let mut rng = rand::thread_rng();
    let adj = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("river");
    let n: u32 = rng.gen_range(10000..100000);
    format!("{adj}-{noun}-{n}")
}

/// Animals for SNI endpoint names, as Heroku names them (`quiet-heron-48213`).
const ANIMALS: &[&str] = &[
    "albatross",
    "badger",
    "beaver",
    "bison",
    "camel",
    "cheetah",
    "condor",
    "coyote",
    "crane",
    "dolphin",
    "falcon",
    "ferret",
    "gazelle",
    "gecko",
    "heron",
    "ibex",
    "jackal",
    "koala",
    "lemur",
    "lynx",
    "marmot",
    "moose",
    "narwhal",
    "ocelot",
    "otter",
    "panda",
    "pelican",
    "puffin",
    "quokka",
    "raven",
    "salmon",
    "seal",
    "stork",
    "tapir",
    "walrus",
    "wombat",
    "yak",
    "zebra",
];

/// A DNS target label for a custom domain, `<adjective>-<noun>-<6 hex>` (`misty-river-3fa9c1`);
/// the caller appends the DNS target domain.
pub fn generate_dns_target_label() -> String {
    let mut rng = rand::thread_rng();
    let adj = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("river");
    let n: u32 = rng.gen_range(0..0x100_0000);
    format!("{adj}-{noun}-{n:06x}")
}

/// A Heroku-style SNI endpoint name, `<adjective>-<animal>-<number>` (`quiet-heron-48213`).
pub fn generate_sni_endpoint_name() -> String {
    let mut rng = rand::thread_rng();
    let adj = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let animal = ANIMALS.choose(&mut rng).copied().unwrap_or("heron");
    let n: u32 = rng.gen_range(10000..100000);
    format!("{adj}-{animal}-{n}")
}

/// A Heroku-style add-on name, `<prefix>-<adjective>-<number>` (`redis-concave-52656`).
pub fn generate_addon_name(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let adj = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let n: u32 = rng.gen_range(10000..100000);
    format!("{prefix}-{adj}-{n}")
}

/// An add-on name a user chose: a letter, then letters, digits, `-` and `_`, at most 64.
pub fn validate_addon_name(name: &str) -> Result<(), String> {
    let ok = name.len() >= 2
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Add-on name \"{name}\" is invalid: use 2 to 64 letters, digits, '-' and '_', starting \
             with a letter."
        ))
    }
}

/// An attachment name (`DATABASE`, `HEROKU_REDIS_ONYX`): upper case letters, digits and `_`,
/// starting with a letter; given in any case, answered upper case.
pub fn normalize_attachment_name(name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    let ok = !upper.is_empty()
        && upper.len() <= 64
        && upper.starts_with(|c: char| c.is_ascii_uppercase())
        && upper
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(upper)
    } else {
        Err(format!(
            "Attachment name \"{name}\" is invalid: use letters, digits and '_', starting with a \
             letter (it becomes the prefix of config vars such as {}_URL).",
            if upper.is_empty() { "NAME" } else { &upper }
        ))
    }
}

/// A change to one formation entry's quantity, as sent by `ps:scale` (`"2"`, `2`, `"+1"`, `"-1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityChange {
    Absolute(u32),
    Relative(i64),
}

impl QuantityChange {
    /// Parses a quantity given as JSON (number or string).
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        match v {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(QuantityChange::Absolute)
                .ok_or_else(|| format!("Invalid quantity {n}: use a whole number of dynos.")),
            serde_json::Value::String(s) => Self::parse(s),
            other => Err(format!(
                "Invalid quantity {other}: use a number such as 2, or +1 / -1."
            )),
        }
    }

    /// Parses `"2"`, `"+1"` or `"-1"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let err = || format!("Invalid quantity {s:?}: use a number such as 2, or +1 / -1.");
        if let Some(rest) = s.strip_prefix('+') {
            rest.parse::<u32>()
                .map(|n| QuantityChange::Relative(n as i64))
                .map_err(|_| err())
        } else if let Some(rest) = s.strip_prefix('-') {
            rest.parse::<u32>()
                .map(|n| QuantityChange::Relative(-(n as i64)))
                .map_err(|_| err())
        } else {
            s.parse::<u32>()
                .map(QuantityChange::Absolute)
                .map_err(|_| err())
        }
    }

    /// Applies the change to a current quantity, never going below zero.
    pub fn apply(self, current: u32) -> u32 {
        match self {
            QuantityChange::Absolute(n) => n,
            QuantityChange::Relative(d) => (current as i64 + d).clamp(0, u32::MAX as i64) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_follow_herokus_rule() {
        assert!(validate_app_name("demo").is_ok());
        assert!(validate_app_name("my-app-2").is_ok());
        assert!(validate_app_name("Demo").is_err());
        assert!(validate_app_name("2demo").is_err());
        assert!(validate_app_name("de_mo").is_err());
        assert!(validate_app_name("ab").is_err());
        assert!(validate_app_name(&"a".repeat(31)).is_err());
        assert!(validate_app_name(&"a".repeat(30)).is_ok());
    }

    #[test]
    fn generated_names_are_valid() {
        for _ in 0..200 {
            let n = generate_app_name();
            assert!(validate_app_name(&n).is_ok(), "{n}");
            let t = generate_dns_target_label();
            let hex = t.rsplit('-').next().unwrap_or_default();
            assert!(
                hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                "{t}"
            );
            assert_eq!(t.split('-').count(), 3, "{t}");
            let e = generate_sni_endpoint_name();
            assert!(validate_app_name(&e).is_ok(), "{e}");
        }
    }

    #[test]
    fn config_keys() {
        assert!(validate_config_key("DATABASE_URL").is_ok());
        assert!(validate_config_key("_x1").is_ok());
        assert!(validate_config_key("1X").is_err());
        assert!(validate_config_key("A-B").is_err());
        assert!(validate_config_key("").is_err());
        assert!(validate_config_key("PORT").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(QuantityChange::parse("3"), Ok(QuantityChange::Absolute(3)));
        assert_eq!(QuantityChange::parse("+1").map(|q| q.apply(2)), Ok(3));
        assert_eq!(QuantityChange::parse("-5").map(|q| q.apply(2)), Ok(0));
        assert!(QuantityChange::parse("x").is_err());
        assert_eq!(
            QuantityChange::from_json(&serde_json::json!(2)),
            Ok(QuantityChange::Absolute(2))
        );
        assert!(QuantityChange::from_json(&serde_json::json!(-1)).is_err());
        assert!(QuantityChange::from_json(&serde_json::json!(true)).is_err());
    }
}
