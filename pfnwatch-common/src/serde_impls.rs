//! Hooks and classes serialize by name, so captures stay readable and
//! survive a reordering of ids.

use crate::{Class, Hook, Level};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

impl Serialize for Hook {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.function())
    }
}

impl<'de> Deserialize<'de> for Hook {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Hook::from_function(&name).ok_or_else(|| D::Error::custom(format!("unknown hook {name:?}")))
    }
}

impl Serialize for Class {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Class {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Class::parse(&text).map_err(D::Error::custom)
    }
}

/// A level is its number in captures and JSON (0 pte, 1 pmd, 2 pud).
impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.raw())
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = u32::deserialize(d)?;
        Level::from_raw(raw).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown page-table level {raw} (0 pte, 1 pmd, 2 pud)"
            ))
        })
    }
}
