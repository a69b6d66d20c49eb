//! JSON tensor data parsed straight into a typed buffer: nested or flat
//! arrays, no `serde_json::Value` tree, no per-element allocation.
//!
//! The request decoder hands `data` over as raw JSON that serde_json has
//! already validated, so this is a plain byte scanner: brackets, commas and
//! number tokens. Floats are read as f64, correctly rounded, and then
//! narrowed, as numpy's `json` + `astype` does: plain short decimals by one
//! exact division ([`short_decimal`]), the rest by `fast_float2`;
//! integers through the standard library's parser. serde's visitor for every
//! element cost a third more (the `codec` bench: 41.3 against 30.6 µs for
//! 784 floats, back to back).

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
            DataType::Bytes => TensorData::Bytes(parse_strings(raw, count)?),
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

/// `BYTES` in JSON: strings (UTF-8), in arrays nested as the shape or flat.
/// Off the numeric fast path: text models are not parse-bound.
fn parse_strings(raw: &RawValue, count: usize) -> Parsed<Vec<Vec<u8>>> {
    fn walk(value: serde_json::Value, depth: usize, count: usize, out: &mut Vec<Vec<u8>>) -> Parsed<()> {
        match value {
            serde_json::Value::String(text) if out.len() < count => {
                out.push(text.into_bytes());
                Ok(())
            }
            // More than the shape holds: counted, not kept.
            serde_json::Value::String(_) => {
                out.push(Vec::new());
                Ok(())
            }
            serde_json::Value::Array(items) if depth < MAX_DATA_DEPTH => items
                .into_iter()
                .try_for_each(|item| walk(item, depth + 1, count, out)),
            serde_json::Value::Array(_) => Err(format!("data is nested deeper than {MAX_DATA_DEPTH} levels")),
            other => Err(format!("expected a string for BYTES, got {}", kind(&other))),
        }
    }
    fn kind(value: &serde_json::Value) -> &'static str {
        match value {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Object(_) => "an object",
            _ => "a list",
        }
    }
    let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(|err| err.to_string())?;
    let mut out = Vec::new();
    walk(value, 0, count, &mut out)?;
    Ok(out)
}

fn parse_elements<T: Element>(raw: &RawValue, capacity: usize, count: usize) -> Parsed<Vec<T>> {
    let mut scanner = Scanner {
        text: raw.get(),
        at: 0,
        out: Vec::with_capacity(capacity),
        limit: count,
    };
    scanner.value(0)?;
    Ok(scanner.out)
}

/// A datatype's element as JSON spells it; `None` means out of range.
trait Element: Sized {
    const NAME: &'static str;
    /// Floats take the fast float parser; integers and booleans their tokens.
    const FLOAT: bool = false;

    /// A JSON number token (valid JSON grammar: serde_json checked it) for
    /// an integer or boolean type; float types parse theirs in the scanner.
    /// A fraction or an exponent is no integer, and a number beyond 64 bits
    /// fits none.
    fn from_number(token: &str) -> Option<Self> {
        if token.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            return None;
        }
        match token.parse::<i64>() {
            Ok(value) => Self::from_i64(value),
            Err(_) => token.parse::<u64>().ok().and_then(Self::from_u64),
        }
    }
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
            const FLOAT: bool = true;
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

/// Powers of ten that an f64 holds exactly, as far as 19 digits reach.
const EXACT_POWERS_OF_TEN: [f64; 20] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19,
];

/// The number at the start of `text` when it is a plain decimal
/// (`-?digits(.digits)?`, no exponent) of at most 19 digits whose digits
/// make at most 2^53, with the bytes it used; `None` for anything else.
///
/// Such a number is an exact integer divided by an exact power of ten, and
/// one IEEE division of exact operands is correctly rounded (Clinger's fast
/// path): the same f64 as `fast_float2` or the standard library, and at
/// less than half its cost per number on the short decimals clients send
/// (`floor`'s decode column in `benches/RESULTS.md`).
fn short_decimal(text: &[u8]) -> Option<(f64, usize)> {
    /// Appends the digits from `at` on to `mantissa`; where they end. More
    /// than 19 digits wrap, and are refused by the caller.
    fn digits(text: &[u8], mut at: usize, mantissa: &mut u64) -> usize {
        while let Some(digit) = text
            .get(at)
            .map(|byte| byte.wrapping_sub(b'0'))
            .filter(|digit| *digit < 10)
        {
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(digit));
            at += 1;
        }
        at
    }
    let negative = text.first() == Some(&b'-');
    let start = usize::from(negative);
    let mut mantissa = 0u64;
    let mut at = digits(text, start, &mut mantissa);
    let mut count = at - start;
    let mut fraction_digits = 0;
    if text.get(at) == Some(&b'.') {
        let end = digits(text, at + 1, &mut mantissa);
        fraction_digits = end - (at + 1);
        count += fraction_digits;
        at = end;
    }
    if count == 0 || count > 19 || mantissa > 1 << 53 || matches!(text.get(at), Some(b'e' | b'E')) {
        return None;
    }
    let magnitude = mantissa as f64 / EXACT_POWERS_OF_TEN.get(fraction_digits)?;
    Some((if negative { -magnitude } else { magnitude }, at))
}

/// Walks validated JSON: arrays nested up to [`MAX_DATA_DEPTH`] deep whose
/// leaves are numbers (booleans for BOOL), appended row-major to `out`.
struct Scanner<'a, T> {
    text: &'a str,
    at: usize,
    out: Vec<T>,
    /// Stop as soon as more elements arrive than the shape allows.
    limit: usize,
}

impl<T: Element> Scanner<'_, T> {
    fn skip_whitespace(&mut self) {
        while self
            .text
            .as_bytes()
            .get(self.at)
            .is_some_and(u8::is_ascii_whitespace)
        {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Parsed<()> {
        self.skip_whitespace();
        match self.text.as_bytes().get(self.at) {
            Some(b'[') => self.array(depth),
            Some(b'-' | b'0'..=b'9') if T::FLOAT => {
                // Correctly rounded, as the standard library's parser, at a
                // fraction of its cost on the 17-digit decimals numpy sends.
                let start = self.at;
                let rest = &self.text.as_bytes()[start..];
                let (value, used) = match short_decimal(rest) {
                    Some(parsed) => parsed,
                    None => fast_float2::parse_partial::<f64, _>(rest)
                        .map_err(|_| "malformed number in data".to_string())?,
                };
                self.at += used.max(1);
                // Beyond f64's range a JSON number is refused, as serde_json does.
                let element = Some(value)
                    .filter(|value| value.is_finite())
                    .and_then(T::from_f64);
                self.push(element, &self.text[start..self.at])
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while self
                    .text
                    .as_bytes()
                    .get(self.at)
                    .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    self.at += 1;
                }
                // The token is ASCII, so these are char boundaries.
                let token = &self.text[start..self.at];
                self.push(T::from_number(token), token)
            }
            Some(b't') => {
                self.at += "true".len();
                self.push(T::from_bool(true), "true")
            }
            Some(b'f') => {
                self.at += "false".len();
                self.push(T::from_bool(false), "false")
            }
            other => {
                let kind = match other {
                    Some(b'"') => "string",
                    Some(b'{') => "map",
                    Some(b'n') => "null",
                    _ => "nothing",
                };
                Err(format!(
                    "invalid type: {kind}, expected {} values in a flat or nested array",
                    T::NAME
                ))
            }
        }
    }

    fn array(&mut self, depth: usize) -> Parsed<()> {
        if depth >= MAX_DATA_DEPTH {
            return Err(format!("data is nested deeper than {MAX_DATA_DEPTH} levels"));
        }
        self.at += 1;
        self.skip_whitespace();
        if self.text.as_bytes().get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            self.skip_whitespace();
            match self.text.as_bytes().get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                // Not reachable with JSON that serde_json accepted.
                _ => return Err("malformed array in data".into()),
            }
        }
    }

    fn push(&mut self, value: Option<T>, shown: &str) -> Parsed<()> {
        let Some(value) = value else {
            return Err(format!("value {shown} is not a valid {}", T::NAME));
        };
        if self.out.len() == self.limit {
            return Err(format!(
                "data has more than the {} elements its shape needs",
                self.limit
            ));
        }
        self.out.push(value);
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
    fn strings_parse_flat_or_nested_and_anything_else_is_named() {
        let raw = |text: &str| serde_json::value::RawValue::from_string(text.to_string()).unwrap();
        let parsed = parse_data(&raw(r#"[["a", "é"], ["", "d"]]"#), DataType::Bytes, 4, "x").unwrap();
        assert_eq!(
            parsed,
            TensorData::Bytes(vec![
                b"a".to_vec(),
                "é".as_bytes().to_vec(),
                Vec::new(),
                b"d".to_vec()
            ])
        );
        let err = parse_data(&raw(r#"["a", null]"#), DataType::Bytes, 2, "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input 'x': expected a string for BYTES, got null"),
            "{err}"
        );
        let err = parse_data(&raw(r#"["a", "b", "c"]"#), DataType::Bytes, 2, "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shape needs 2 elements, data has 3"), "{err}");
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
    fn whitespace_signs_exponents_and_out_of_range_numbers() {
        assert_eq!(
            parse("[ [ -1.5e0 ,\n 2E1 ]\t, [ -0 , 1e-3 ] ]", DataType::F64, 4).unwrap(),
            TensorData::F64(vec![-1.5, 20.0, -0.0, 0.001])
        );
        let err = parse("[1e400]", DataType::F64, 1).unwrap_err().to_string();
        assert!(err.contains("value 1e400 is not a valid FP64"), "{err}");
        let err = parse("[1e2]", DataType::I32, 1).unwrap_err().to_string();
        assert!(err.contains("value 1e2 is not a valid INT32"), "{err}");
        // An integer wider than 64 bits fits a float, never an integer type.
        assert_eq!(
            parse("[100000000000000000000]", DataType::F32, 1).unwrap(),
            TensorData::F32(vec![1e20])
        );
        let err = parse("[100000000000000000000]", DataType::U64, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid UINT64"), "{err}");
        assert_eq!(parse("[]", DataType::F32, 0).unwrap(), TensorData::F32(vec![]));
        let err = parse("[1, null]", DataType::F32, 2).unwrap_err().to_string();
        assert!(err.contains("invalid type: null, expected FP32 values"), "{err}");
    }

    #[test]
    fn floats_are_the_nearest_f64() {
        let tokens = [
            "0",
            "-0",
            "0.1",
            "0.658",
            "-12.5",
            "3e-4",
            "1E2",
            "123456789012345",
            "1234567890123456789",
            "0.30000000000000004",
            "2.2250738585072014e-308",
            "1.7976931348623157e308",
            "5e-324",
            "1e22",
            "1e23",
            "9007199254740993",
            "0.000001234",
            "-7.000000000000001",
        ];
        let json = format!("[{}]", tokens.join(", "));
        let TensorData::F64(parsed) = parse(&json, DataType::F64, tokens.len()).unwrap() else {
            panic!("FP64 data");
        };
        for (token, got) in tokens.iter().zip(parsed) {
            let expected: f64 = token.parse().unwrap();
            assert_eq!(got.to_bits(), expected.to_bits(), "{token}: {got} vs {expected}");
        }
    }

    #[test]
    fn short_decimals_are_the_same_f64_as_the_standard_parser() {
        let mut tokens: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "0.1",
            "0.3",
            "-0.14441",
            "123456789.123456",
            "9007199254740992",
            "9007199254740993",
            // The digits of 2^53 and of 2^53 + 1 over a power of ten: the
            // second must go to fast_float2, one division rounds it wrong.
            "90071992547409.92",
            "90071992547409.93",
            "0.0000000000000000001",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "1.7976931348623157",
            "1e5",
            "2.5E-3",
            "12345678901234567890",
            "3.14159265358979323846",
        ]
        .iter()
        .map(|token| token.to_string())
        .collect();
        // Decimals as clients write them: numpy's 17 digits, rounded ones, integers.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = f64::from_bits(state >> 12 | 0x3ff0_0000_0000_0000) - 1.0;
            let scale = 10f64.powi((state % 9) as i32 - 3);
            tokens.push(format!("{}", value * scale));
            tokens.push(format!("{:.6}", value * scale));
            tokens.push(format!("{}", -((value * 1e6) as i64)));
        }
        for token in &tokens {
            let expected: f64 = token.parse().unwrap();
            let parsed = parse(&format!("[{token}]"), DataType::F64, 1).unwrap();
            let TensorData::F64(values) = parsed else {
                panic!("FP64 expected")
            };
            assert_eq!(values[0].to_bits(), expected.to_bits(), "{token}");
            if let Some((fast, used)) = short_decimal(token.as_bytes()) {
                assert_eq!(fast.to_bits(), expected.to_bits(), "fast path of {token}");
                assert_eq!(used, token.len(), "{token}");
            }
        }
        assert!(short_decimal(b"1e5").is_none() && short_decimal(b"12345678901234567890").is_none());
        assert_eq!(short_decimal(b"0.25]"), Some((0.25, 4)));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let json = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let err = parse(&json, DataType::F32, 1).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 32"), "{err}");
    }
}
