//! Decodes an event from its stored parts, its type and its JSON data, straight into the
//! plugin's event enum: the data is read once, with no `serde_json::Value` built in
//! between, so the keys and values the enum does not keep cost no allocation.
//!
//! The type names the variant and the data is that variant's content, as in
//! [`event_from_parts`]: a unit variant takes `null`, a newtype variant its value, a
//! tuple variant an array and a struct variant an object. [`decode_event`] treats a
//! failure here as "decode it the old way": it decodes through a `Value` again, so
//! what is accepted in the end, and every error message, is what that path gives (it
//! also takes what this one refuses, such as a repeated key, the last one winning).

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde_json::Value;
use serde_json::de::StrRead;

use crate::__bindings::command::tessera::plugin0_2_0::types as wit;
use crate::aggregate::event_from_parts;

/// `event` as the plugin's event type; the error names the event and says why it does
/// not decode.
pub(crate) fn decode_event<E: DeserializeOwned>(event: &wit::Event) -> Result<E, String> {
    if let Ok(typed) = from_tagged(&event.event_type, &event.data) {
        return Ok(typed);
    }
    // Decoded again through a tagged `Value`, which gives the error its wording.
    let data: Value = serde_json::from_str(&event.data)
        .map_err(|e| format!("event {} carries invalid JSON: {e}", event.position))?;
    event_from_parts(&event.event_type, data).map_err(|e| {
        format!(
            "event {} of type {} does not deserialize: {e}",
            event.position, event.event_type
        )
    })
}

/// `data` decoded as the variant of `E` named `event_type`.
fn from_tagged<E: DeserializeOwned>(event_type: &str, data: &str) -> Result<E, serde_json::Error> {
    let mut json = serde_json::Deserializer::from_str(data);
    let value = E::deserialize(Tagged {
        event_type,
        json: &mut json,
    })?;
    json.end()?;
    Ok(value)
}

/// An externally tagged enum whose tag and content are stored apart.
struct Tagged<'de, 'j> {
    event_type: &'de str,
    json: &'j mut serde_json::Deserializer<StrRead<'de>>,
}

impl<'de> de::Deserializer<'de> for Tagged<'de, '_> {
    type Error = serde_json::Error;

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    // Only an enum has variants to name; the caller's fallback decodes anything else.
    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("an event type is an enum"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}

impl<'de> de::EnumAccess<'de> for Tagged<'de, '_> {
    type Error = serde_json::Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), Self::Error> {
        let name = de::value::BorrowedStrDeserializer::<serde_json::Error>::new(self.event_type);
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for Tagged<'de, '_> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        <() as de::Deserialize>::deserialize(&mut *self.json)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        seed.deserialize(&mut *self.json)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_seq(&mut *self.json, visitor)
    }

    // A map, not a struct: serde_json would also take a struct from an array, which
    // the tagged `Value` does not.
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_map(&mut *self.json, visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::Value;

    use super::{event_from_parts, from_tagged};

    #[derive(Debug, PartialEq, Deserialize)]
    enum Event {
        Opened {
            owner: String,
        },
        Deposited {
            amount: u64,
        },
        Closed,
        Renamed(String),
        Moved(u32, u32),
        #[serde(rename = "account-frozen")]
        Frozen {},
    }

    /// Through the tagged `Value`, as before.
    fn old(event_type: &str, data: &str) -> Option<Event> {
        let data: Value = serde_json::from_str(data).ok()?;
        event_from_parts(event_type, data).ok()
    }

    #[test]
    fn decodes_every_kind_of_variant_as_the_tagged_value_does() {
        let cases = [
            ("Opened", r#"{"owner":"ada","ignored":[1,{"x":null}]}"#),
            ("Deposited", r#" { "amount" : 5 } "#),
            ("Closed", "null"),
            ("Renamed", r#""bob \u00e9""#),
            ("Moved", "[1,2]"),
            ("account-frozen", "{}"),
        ];
        for (event_type, data) in cases {
            let new = from_tagged::<Event>(event_type, data).expect(data);
            assert_eq!(Some(new), old(event_type, data), "{event_type} {data}");
        }
    }

    #[test]
    fn refuses_what_the_tagged_value_refuses() {
        let cases = [
            ("Opened", r#"{"owner":1}"#),
            ("Opened", "{}"),
            ("Opened", r#"["ada"]"#),
            ("Deposited", r#"{"amount":-1}"#),
            ("Deposited", r#"{"amount":1.5}"#),
            ("Closed", "{}"),
            ("Moved", "[1]"),
            ("Moved", "[1,2,3]"),
            ("Unknown", "{}"),
            ("Opened", r#"{"owner":"ada"} x"#),
            ("Opened", "not json"),
        ];
        for (event_type, data) in cases {
            assert!(
                from_tagged::<Event>(event_type, data).is_err(),
                "{event_type} {data}"
            );
            assert_eq!(old(event_type, data), None, "{event_type} {data}");
        }
    }

    #[test]
    fn a_repeated_key_is_left_to_the_fallback() {
        let data = r#"{"amount":1,"amount":2}"#;
        assert!(from_tagged::<Event>("Deposited", data).is_err());
        assert_eq!(old("Deposited", data), Some(Event::Deposited { amount: 2 }));
    }
}
