//! JSON tensor data parsed straight into a typed buffer: nested or flat
//! arrays, one pass, no `serde_json::Value` tree.

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::tensor::{DataType, TensorData};

/// Deepest nesting accepted inside `data`; tensors of higher rank are not served.
pub const MAX_DATA_DEPTH: usize = 32;

/// Parses `data` for an input of `datatype` that must hold `count` elements.
pub fn parse_data(raw: &RawValue, datatype: DataType, count: usize, input: &str) -> Result<TensorData> {
    // Never trust `count` for the allocation: a tiny body may claim a huge shape.
    let capacity = count.min(raw.get().len() / 2 + 1);
    let parsed = (|| -> Parsed<TensorData> {
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(parse_elements(raw, capacity, count)?),
            DataType::U8 => TensorData::U8(parse_elements(raw, capacity, count)?),
            DataType::U16 => TensorData::U16(parse_elements(raw, capacity, count)?),
            DataType::U32 => TensorData::U32(parse_elements(raw, capacity, count)?),
            DataType::U64 => TensorData::U64(parse_elements(raw, capacity, count)?),
            DataType::I8 => TensorData::I8(parse_elements(raw, capacity, count)?),
            DataType::I16 => TensorData::I16(parse_elements(raw, capacity, count)?),
            DataType::I32 => TensorData::I32(parse_elements(raw, capacity, count)?),
            DataType::I64 => TensorData::I64(parse_elements(raw, capacity, count)?),
            DataType::F16 => TensorData::F16(parse_elements(raw, capacity, count)?),
            DataType::F32 => TensorData::F32(parse_elements(raw, capacity, count)?),
            DataType::F64 => TensorData::F64(parse_elements(raw, capacity, count)?),
        })
    })();
    let data = parsed.map_err(|message| Error::bad_request(format!("input '{input}': {message}")))?;
    if data.len() != count {
        return Err(Error::bad_request(format!(
            "input '{input}': shape needs {count} elements, data has {}",
            data.len()
        )));
    }
    Ok(data)
}

type Parsed<T> = std::result::Result<T, String>;

fn parse_elements<T: Element>(raw: &RawValue, capacity: usize, count: usize) -> Parsed<Vec<T>> {
    let mut out = Vec::with_capacity(capacity);
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let seed = Flatten {
        out: &mut out,
        depth: 0,
        limit: count,
    };
    match seed.deserialize(&mut deserializer) {
        Ok(()) => Ok(out),
        Err(err) => Err(strip_position(&err)),
    }
}

/// serde_json appends "at line 1 column N" of the `data` fragment, which
/// points nowhere useful in the client's body.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.find(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// A datatype's element as JSON spells it; `None` means out of range.
trait Element: Sized {
    const NAME: &'static str;
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
}

impl Element for bool {
    const NAME: &'static str = "BOOL";
    fn from_bool(value: bool) -> Option<Self> {
        Some(value)
    }
}

macro_rules! integer_element {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            fn from_u64(value: u64) -> Option<Self> {
                <$t>::try_from(value).ok()
            }
            fn from_i64(value: i64) -> Option<Self> {
                <$t>::try_from(value).ok()
            }
        }
    };
}
integer_element!(u8, "UINT8");
integer_element!(u16, "UINT16");
integer_element!(u32, "UINT32");
integer_element!(u64, "UINT64");
integer_element!(i8, "INT8");
integer_element!(i16, "INT16");
integer_element!(i32, "INT32");
integer_element!(i64, "INT64");

macro_rules! float_element {
    ($t:ty, $name:literal, $from_f64:expr) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            fn from_u64(value: u64) -> Option<Self> {
                <Self as Element>::from_f64(value as f64)
            }
            fn from_i64(value: i64) -> Option<Self> {
                <Self as Element>::from_f64(value as f64)
            }
            fn from_f64(value: f64) -> Option<Self> {
                let converted: $t = $from_f64(value);
                // A finite JSON number that overflows the type is a client error,
                // not an infinity to compute with.
                if value.is_finite() && !converted.is_finite() {
                    None
                } else {
                    Some(converted)
                }
            }
        }
    };
}
float_element!(half::f16, "FP16", half::f16::from_f64);
float_element!(f32, "FP32", |v: f64| v as f32);
float_element!(f64, "FP64", |v: f64| v);

struct Flatten<'a, T> {
    out: &'a mut Vec<T>,
    depth: usize,
    /// Stop as soon as more elements arrive than the shape allows.
    limit: usize,
}

impl<T: Element> Flatten<'_, T> {
    fn push<E: de::Error>(self, value: Option<T>, shown: impl std::fmt::Display) -> Result<(), E> {
        let Some(value) = value else {
            return Err(E::custom(format!("value {shown} is not a valid {}", T::NAME)));
        };
        if self.out.len() == self.limit {
            return Err(E::custom(format!(
                "data has more than the {} elements its shape needs",
                self.limit
            )));
        }
        self.out.push(value);
        Ok(())
    }
}

impl<'de, T: Element> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Element> Visitor<'de> for Flatten<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} values in a flat or nested array", T::NAME)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.push(T::from_bool(value), value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.push(T::from_u64(value), value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.push(T::from_i64(value), value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.push(T::from_f64(value), value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DATA_DEPTH {
            return Err(de::Error::custom(format!(
                "data is nested deeper than {MAX_DATA_DEPTH} levels"
            )));
        }
        while seq
            .next_element_seed(Flatten {
                out: &mut *self.out,
                depth: self.depth + 1,
                limit: self.limit,
            })?
            .is_some()
        {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, datatype: DataType, count: usize) -> Result<TensorData> {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        parse_data(&raw, datatype, count, "x")
    }

    #[test]
    fn flat_and_nested_arrays_give_the_same_row_major_data() {
        let flat = parse("[1, 2, 3, 4]", DataType::F32, 4).unwrap();
        let nested = parse("[[1.0, 2], [3, 4e0]]", DataType::F32, 4).unwrap();
        assert_eq!(flat, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(flat, nested);
    }

    #[test]
    fn integers_are_range_checked_and_floats_refused() {
        assert_eq!(
            parse("[255, 0]", DataType::U8, 2).unwrap(),
            TensorData::U8(vec![255, 0])
        );
        let err = parse("[256]", DataType::U8, 1).unwrap_err().to_string();
        assert!(err.contains("value 256 is not a valid UINT8"), "{err}");
        let err = parse("[1.5]", DataType::I64, 1).unwrap_err().to_string();
        assert!(err.contains("not a valid INT64"), "{err}");
        assert_eq!(
            parse("[18446744073709551615]", DataType::U64, 1).unwrap(),
            TensorData::U64(vec![u64::MAX])
        );
        assert_eq!(
            parse("[-9223372036854775808]", DataType::I64, 1).unwrap(),
            TensorData::I64(vec![i64::MIN])
        );
    }

    #[test]
    fn floats_that_overflow_their_type_are_refused() {
        let err = parse("[70000]", DataType::F16, 1).unwrap_err().to_string();
        assert!(err.contains("not a valid FP16"), "{err}");
        let err = parse("[1e39]", DataType::F32, 1).unwrap_err().to_string();
        assert!(err.contains("not a valid FP32"), "{err}");
    }

    #[test]
    fn booleans_and_wrong_kinds() {
        assert_eq!(
            parse("[true, false]", DataType::Bool, 2).unwrap(),
            TensorData::Bool(vec![true, false])
        );
        let err = parse("[1]", DataType::Bool, 1).unwrap_err().to_string();
        assert!(err.contains("not a valid BOOL"), "{err}");
        let err = parse("[\"a\"]", DataType::F32, 1).unwrap_err().to_string();
        assert!(err.contains("FP32 values"), "{err}");
    }

    #[test]
    fn counts_must_match_and_excess_stops_early() {
        let err = parse("[1, 2, 3]", DataType::F32, 4).unwrap_err().to_string();
        assert!(err.contains("shape needs 4 elements, data has 3"), "{err}");
        let err = parse("[1, 2, 3]", DataType::F32, 2).unwrap_err().to_string();
        assert!(err.contains("more than the 2 elements"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let json = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let err = parse(&json, DataType::F32, 1).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 32"), "{err}");
    }
}
