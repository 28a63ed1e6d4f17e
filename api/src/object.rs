//! JSON objects only: serde's derived `Deserialize` for a struct also accepts an array of its
//! fields in order, so `"response": []` read as a response with every default (a `PATCH` that
//! silently reset the bin's response). Request bodies and the structs inside them go through
//! [`Object`], which takes a map and nothing else.

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `T` read from a JSON object only (an array, a string or a number is an "invalid type" error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(PhantomData)).map(Object)
    }
}

/// For `#[serde(deserialize_with)]` on an `Option` of a struct: an object or `null`.
pub(crate) fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
}

/// For `#[serde(deserialize_with)]` on a `Vec` of structs: an array of objects.
pub(crate) fn each<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Vec::<Object<T>>::deserialize(d)?
        .into_iter()
        .map(|o| o.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::{BinIn, BinResponse};

    #[test]
    fn structs_come_from_objects_only() {
        for bad in [
            r#"{"response": []}"#,
            r#"{"response": [404]}"#,
            r#"{"limits": [5]}"#,
            r#"{"response": {"headers": [["X-A", "1"]]}}"#,
        ] {
            let e = serde_json::from_str::<BinIn>(bad).unwrap_err();
            assert!(e.to_string().contains("a JSON object"), "{bad}: {e}");
        }
        let ok: BinIn = serde_json::from_str(
            r#"{"response": {"status": 201, "headers": [{"name": "A", "value": "1"}]},
                "limits": null}"#,
        )
        .unwrap();
        assert_eq!(ok.response.as_ref().map(|r| r.status), Some(201));
        assert_eq!(ok.limits, None);
        let r: BinResponse = serde_json::from_str(r#"{"headers": []}"#).unwrap();
        assert_eq!(r, BinResponse::default());
    }
}
