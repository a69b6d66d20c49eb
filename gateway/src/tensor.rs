//! Typed tensors: the one in-memory form every codec decodes into and every
//! backend reads from, so no engine-specific type leaks into the protocol code.

use half::f16;

/// The Open Inference Protocol datatypes, `BYTES` (ONNX's strings) included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
    /// Strings of bytes: ONNX's `string` tensors (UTF-8 on both engines).
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// The name on the wire, as in `"datatype": "FP32"`.
    pub fn wire_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn from_wire_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|dt| dt.wire_name() == name)
    }

    /// Bytes per element in the binary tensor extension (BOOL is one byte;
    /// a `BYTES` element takes its 4-byte length and then its bytes, so 4
    /// is its least: see [`TensorData::wire_size`]).
    pub fn size_of(self) -> usize {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::Bytes => 4,
            DataType::U16 | DataType::I16 | DataType::F16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
        }
    }

    /// The ONNX `TensorProto.DataType` code, or `None` for types we do not serve.
    pub fn from_onnx_code(code: i32) -> Option<DataType> {
        Some(match code {
            1 => DataType::F32,
            2 => DataType::U8,
            3 => DataType::I8,
            4 => DataType::U16,
            5 => DataType::I16,
            6 => DataType::I32,
            7 => DataType::I64,
            9 => DataType::Bool,
            10 => DataType::F16,
            11 => DataType::F64,
            12 => DataType::U32,
            13 => DataType::U64,
            8 => DataType::Bytes,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// Element storage, one variant per datatype, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Runs `$body` with `$v` bound to the inner `Vec` of any numeric
/// [`TensorData`] variant, and `$bytes` with `$b` bound to a `BYTES` one's.
#[macro_export]
macro_rules! with_tensor_data {
    ($data:expr, $v:ident => $body:expr, $b:ident => $bytes:expr) => {
        match $data {
            $crate::tensor::TensorData::Bytes($b) => $bytes,
            $crate::tensor::TensorData::Bool($v) => $body,
            $crate::tensor::TensorData::U8($v) => $body,
            $crate::tensor::TensorData::U16($v) => $body,
            $crate::tensor::TensorData::U32($v) => $body,
            $crate::tensor::TensorData::U64($v) => $body,
            $crate::tensor::TensorData::I8($v) => $body,
            $crate::tensor::TensorData::I16($v) => $body,
            $crate::tensor::TensorData::I32($v) => $body,
            $crate::tensor::TensorData::I64($v) => $body,
            $crate::tensor::TensorData::F16($v) => $body,
            $crate::tensor::TensorData::F32($v) => $body,
            $crate::tensor::TensorData::F64($v) => $body,
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F16(_) => DataType::F16,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        with_tensor_data!(self, v => v.len(), b => b.len())
    }

    /// Bytes this data takes in the binary tensor extension (and, near
    /// enough, in memory).
    pub fn wire_size(&self) -> usize {
        match self {
            TensorData::Bytes(values) => values
                .iter()
                .map(|value| 4usize.saturating_add(value.len()))
                .sum(),
            other => other.len().saturating_mul(other.datatype().size_of()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` zeros of `datatype`: the warm-up input.
    pub fn zeros(datatype: DataType, len: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(vec![false; len]),
            DataType::U8 => TensorData::U8(vec![0; len]),
            DataType::U16 => TensorData::U16(vec![0; len]),
            DataType::U32 => TensorData::U32(vec![0; len]),
            DataType::U64 => TensorData::U64(vec![0; len]),
            DataType::I8 => TensorData::I8(vec![0; len]),
            DataType::I16 => TensorData::I16(vec![0; len]),
            DataType::I32 => TensorData::I32(vec![0; len]),
            DataType::I64 => TensorData::I64(vec![0; len]),
            DataType::F16 => TensorData::F16(vec![f16::ZERO; len]),
            DataType::F32 => TensorData::F32(vec![0.0; len]),
            DataType::F64 => TensorData::F64(vec![0.0; len]),
            DataType::Bytes => TensorData::Bytes(vec![Vec::new(); len]),
        }
    }

    /// `values` cast to `datatype` as `as` casts do (saturating, truncating
    /// toward zero; non-zero is true): warm-up inputs written in a config.
    pub fn from_f64s(datatype: DataType, values: &[f64]) -> TensorData {
        macro_rules! cast {
            ($variant:ident, $kind:ty) => {
                TensorData::$variant(values.iter().map(|&value| value as $kind).collect())
            };
        }
        match datatype {
            DataType::Bool => TensorData::Bool(values.iter().map(|&value| value != 0.0).collect()),
            DataType::U8 => cast!(U8, u8),
            DataType::U16 => cast!(U16, u16),
            DataType::U32 => cast!(U32, u32),
            DataType::U64 => cast!(U64, u64),
            DataType::I8 => cast!(I8, i8),
            DataType::I16 => cast!(I16, i16),
            DataType::I32 => cast!(I32, i32),
            DataType::I64 => cast!(I64, i64),
            DataType::F16 => TensorData::F16(values.iter().map(|&value| f16::from_f64(value)).collect()),
            DataType::F32 => cast!(F32, f32),
            DataType::F64 => TensorData::F64(values.to_vec()),
            DataType::Bytes => TensorData::Bytes(
                values
                    .iter()
                    .map(|value| value.to_string().into_bytes())
                    .collect(),
            ),
        }
    }

    /// Little-endian bytes, as the binary tensor extension carries them.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.wire_size());
        match self {
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            TensorData::U8(v) => out.extend_from_slice(v),
            TensorData::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I8(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::F16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            // As tritonclient writes them: each a 4-byte length, then its bytes.
            TensorData::Bytes(v) => v.iter().for_each(|x| {
                out.extend_from_slice(&(x.len() as u32).to_le_bytes());
                out.extend_from_slice(x);
            }),
        }
    }

    /// Reads `count` `BYTES` elements, each a 4-byte little-endian length and
    /// its bytes, that must fill `bytes` exactly.
    pub fn bytes_from_wire(bytes: &[u8], count: usize) -> Result<TensorData, String> {
        let mut rest = bytes;
        let mut values = Vec::with_capacity(count.min(bytes.len() / 4));
        for index in 0..count {
            let Some((length, tail)) = rest.split_first_chunk::<4>() else {
                return Err(format!(
                    "element {index} of {count}: its 4-byte length is cut off ({} bytes left)",
                    rest.len()
                ));
            };
            let length = u32::from_le_bytes(*length) as usize;
            if length > tail.len() {
                return Err(format!(
                    "element {index} of {count} is {length} bytes long but only {} remain",
                    tail.len()
                ));
            }
            let (value, tail) = tail.split_at(length);
            values.push(value.to_vec());
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes follow the last of its {count} elements",
                rest.len()
            ));
        }
        Ok(TensorData::Bytes(values))
    }

    /// Decodes little-endian bytes; the caller has checked that the length is
    /// a whole number of elements. `BYTES` goes through
    /// [`TensorData::bytes_from_wire`], which can fail.
    pub fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> TensorData {
        fn decode<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|chunk| f(chunk.try_into().expect("chunks_exact yields N bytes")))
                .collect()
        }
        match datatype {
            DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DataType::U8 => TensorData::U8(bytes.to_vec()),
            DataType::U16 => TensorData::U16(decode(bytes, u16::from_le_bytes)),
            DataType::U32 => TensorData::U32(decode(bytes, u32::from_le_bytes)),
            DataType::U64 => TensorData::U64(decode(bytes, u64::from_le_bytes)),
            DataType::I8 => TensorData::I8(decode(bytes, i8::from_le_bytes)),
            DataType::I16 => TensorData::I16(decode(bytes, i16::from_le_bytes)),
            DataType::I32 => TensorData::I32(decode(bytes, i32::from_le_bytes)),
            DataType::I64 => TensorData::I64(decode(bytes, i64::from_le_bytes)),
            DataType::F16 => TensorData::F16(decode(bytes, f16::from_le_bytes)),
            DataType::F32 => TensorData::F32(decode(bytes, f32::from_le_bytes)),
            DataType::F64 => TensorData::F64(decode(bytes, f64::from_le_bytes)),
            DataType::Bytes => {
                // Every whole element there is; the request decoder checks
                // the count and the tail with `bytes_from_wire` first.
                let mut values = Vec::new();
                let mut rest = bytes;
                while let Some((length, tail)) = rest.split_first_chunk::<4>()
                    && let Some((value, tail)) = tail.split_at_checked(u32::from_le_bytes(*length) as usize)
                {
                    values.push(value.to_vec());
                    rest = tail;
                }
                TensorData::Bytes(values)
            }
        }
    }
}

/// How far apart two values may be and still be the same FP32 number near
/// `value`: a request's FP32 0.1 is 0.10000000149 as f64, and equals the
/// 0.1 of a category, a bound or a rule.
pub fn fp32_tolerance(value: f64) -> f64 {
    f64::from(f32::EPSILON) * value.abs().max(1.0)
}

/// A named-by-position tensor: shape plus row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// Element `index` (row-major) as f64, booleans as 0 and 1; `None` past the end.
    pub fn f64_at(&self, index: usize) -> Option<f64> {
        Some(match &self.data {
            TensorData::Bool(v) => f64::from(u8::from(*v.get(index)?)),
            TensorData::U8(v) => f64::from(*v.get(index)?),
            TensorData::U16(v) => f64::from(*v.get(index)?),
            TensorData::U32(v) => f64::from(*v.get(index)?),
            TensorData::U64(v) => *v.get(index)? as f64,
            TensorData::I8(v) => f64::from(*v.get(index)?),
            TensorData::I16(v) => f64::from(*v.get(index)?),
            TensorData::I32(v) => f64::from(*v.get(index)?),
            TensorData::I64(v) => *v.get(index)? as f64,
            TensorData::F16(v) => f64::from(*v.get(index)?),
            TensorData::F32(v) => f64::from(*v.get(index)?),
            TensorData::F64(v) => *v.get(index)?,
            TensorData::Bytes(_) => return None,
        })
    }

    /// Element `index` of a `BYTES` tensor; `None` for any other datatype
    /// or past the end.
    pub fn bytes_at(&self, index: usize) -> Option<&[u8]> {
        match &self.data {
            TensorData::Bytes(values) => values.get(index).map(Vec::as_slice),
            _ => None,
        }
    }

    /// Size of the first (batch) dimension; 0 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Marks in `bad` (one flag per row) each row holding a NaN or an
    /// infinity; nothing for a tensor of integers or of other rows. One
    /// pass over the values, and none more when all are finite.
    pub fn mark_nonfinite_rows(&self, bad: &mut Vec<bool>, rows: usize) {
        fn mark<T: Copy>(values: &[T], finite: impl Fn(T) -> bool, bad: &mut Vec<bool>, rows: usize) {
            if rows == 0 || !values.len().is_multiple_of(rows) || values.iter().all(|&value| finite(value)) {
                return;
            }
            bad.resize(rows, false);
            let per_row = values.len() / rows;
            for (row, chunk) in values.chunks(per_row.max(1)).enumerate().take(rows) {
                if chunk.iter().any(|&value| !finite(value)) {
                    bad[row] = true;
                }
            }
        }
        match &self.data {
            TensorData::F16(values) => mark(values, |value: f16| value.is_finite(), bad, rows),
            TensorData::F32(values) => mark(values, f32::is_finite, bad, rows),
            TensorData::F64(values) => mark(values, f64::is_finite, bad, rows),
            _ => {}
        }
    }

    /// Joins tensors of one datatype and equal inner dims along the first
    /// dimension: the batcher's input. `None` when they do not fit together.
    pub fn concat_rows(parts: &[&Tensor]) -> Option<Tensor> {
        let first = parts.first()?;
        let inner = first.shape.get(1..)?;
        if parts
            .iter()
            .any(|part| part.shape.get(1..) != Some(inner) || part.datatype() != first.datatype())
        {
            return None;
        }
        let rows = parts.iter().map(|part| part.rows()).sum();
        let len = parts.iter().map(|part| part.data.len()).sum();
        macro_rules! join {
            ($variant:ident) => {{
                let mut out = Vec::with_capacity(len);
                for part in parts {
                    if let TensorData::$variant(values) = &part.data {
                        out.extend_from_slice(values);
                    }
                }
                TensorData::$variant(out)
            }};
        }
        let data = match first.datatype() {
            DataType::Bool => join!(Bool),
            DataType::U8 => join!(U8),
            DataType::U16 => join!(U16),
            DataType::U32 => join!(U32),
            DataType::U64 => join!(U64),
            DataType::I8 => join!(I8),
            DataType::I16 => join!(I16),
            DataType::I32 => join!(I32),
            DataType::I64 => join!(I64),
            DataType::F16 => join!(F16),
            DataType::F32 => join!(F32),
            DataType::F64 => join!(F64),
            DataType::Bytes => join!(Bytes),
        };
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Some(Tensor { shape, data })
    }

    /// Cuts a batched result back into consecutive slices of `rows` rows
    /// each: the inverse of [`Tensor::concat_rows`]. `None` when the first
    /// dimension is not the sum of `rows`.
    pub fn split_rows(self, rows: &[usize]) -> Option<Vec<Tensor>> {
        if self.rows() != rows.iter().sum::<usize>() {
            return None;
        }
        let row_len = self.shape[1..].iter().product::<usize>();
        let Tensor { shape, data } = self;
        macro_rules! cut {
            ($values:expr, $variant:ident) => {{
                let mut rest = $values.as_slice();
                rows.iter()
                    .map(|&count| {
                        let (head, tail) = rest.split_at(count * row_len);
                        rest = tail;
                        let mut part_shape = shape.clone();
                        part_shape[0] = count;
                        Tensor {
                            shape: part_shape,
                            data: TensorData::$variant(head.to_vec()),
                        }
                    })
                    .collect()
            }};
        }
        Some(match &data {
            TensorData::Bool(v) => cut!(v, Bool),
            TensorData::U8(v) => cut!(v, U8),
            TensorData::U16(v) => cut!(v, U16),
            TensorData::U32(v) => cut!(v, U32),
            TensorData::U64(v) => cut!(v, U64),
            TensorData::I8(v) => cut!(v, I8),
            TensorData::I16(v) => cut!(v, I16),
            TensorData::I32(v) => cut!(v, I32),
            TensorData::I64(v) => cut!(v, I64),
            TensorData::F16(v) => cut!(v, F16),
            TensorData::F32(v) => cut!(v, F32),
            TensorData::F64(v) => cut!(v, F64),
            TensorData::Bytes(v) => cut!(v, Bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_a_nan_or_an_infinity_are_marked_in_any_float_output() {
        let scores = Tensor {
            shape: vec![3, 2],
            data: TensorData::F32(vec![0.1, 0.9, f32::NAN, 0.5, 0.3, 0.7]),
        };
        let other = Tensor {
            shape: vec![3],
            data: TensorData::F64(vec![1.0, 2.0, f64::NEG_INFINITY]),
        };
        let labels = Tensor {
            shape: vec![3],
            data: TensorData::I64(vec![1, 0, 1]),
        };
        let mut bad = Vec::new();
        labels.mark_nonfinite_rows(&mut bad, 3);
        assert!(
            bad.is_empty(),
            "integers are never marked, and all-finite costs no flags"
        );
        scores.mark_nonfinite_rows(&mut bad, 3);
        assert_eq!(bad, [false, true, false]);
        other.mark_nonfinite_rows(&mut bad, 3);
        assert_eq!(bad, [false, true, true]);
    }

    #[test]
    fn le_bytes_round_trip_for_every_datatype() {
        for datatype in DataType::ALL {
            let zeros = TensorData::zeros(datatype, 3);
            let mut bytes = Vec::new();
            zeros.write_le_bytes(&mut bytes);
            assert_eq!(bytes.len(), 3 * datatype.size_of());
            assert_eq!(bytes.len(), zeros.wire_size());
            assert_eq!(TensorData::from_le_bytes(datatype, &bytes), zeros);
        }
        let values = TensorData::I32(vec![-1, 7, i32::MAX]);
        let mut bytes = Vec::new();
        values.write_le_bytes(&mut bytes);
        assert_eq!(TensorData::from_le_bytes(DataType::I32, &bytes), values);
    }

    #[test]
    fn bytes_read_as_tritonclient_writes_them() {
        let words = TensorData::Bytes(vec![b"cat".to_vec(), Vec::new(), "été".as_bytes().to_vec()]);
        let mut wire = Vec::new();
        words.write_le_bytes(&mut wire);
        assert_eq!(&wire[..7], &[3, 0, 0, 0, b'c', b'a', b't']);
        assert_eq!(wire.len(), words.wire_size());
        assert_eq!(TensorData::bytes_from_wire(&wire, 3), Ok(words));
        let cut = TensorData::bytes_from_wire(&wire[..wire.len() - 1], 3).unwrap_err();
        assert!(
            cut.contains("element 2 of 3 is 5 bytes long but only 4 remain"),
            "{cut}"
        );
        let extra = TensorData::bytes_from_wire(&wire, 2).unwrap_err();
        assert!(extra.contains("follow the last of its 2 elements"), "{extra}");
        let short = TensorData::bytes_from_wire(&[1, 0], 1).unwrap_err();
        assert!(short.contains("length is cut off"), "{short}");
    }

    #[test]
    fn rows_concatenate_and_split_back_exactly() {
        let a = Tensor {
            shape: vec![1, 3],
            data: TensorData::F32(vec![1.0, 2.0, 3.0]),
        };
        let b = Tensor {
            shape: vec![2, 3],
            data: TensorData::F32(vec![4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
        };
        let joined = Tensor::concat_rows(&[&a, &b]).unwrap();
        assert_eq!(joined.shape, vec![3, 3]);
        assert_eq!(joined.split_rows(&[1, 2]).unwrap(), vec![a.clone(), b.clone()]);

        let narrow = Tensor {
            shape: vec![1, 2],
            data: TensorData::F32(vec![1.0, 2.0]),
        };
        assert!(Tensor::concat_rows(&[&a, &narrow]).is_none(), "inner dims differ");
        let ints = Tensor {
            shape: vec![1, 3],
            data: TensorData::I64(vec![1, 2, 3]),
        };
        assert!(Tensor::concat_rows(&[&a, &ints]).is_none(), "datatypes differ");
        assert!(b.split_rows(&[1, 2]).is_none(), "rows do not add up");
    }

    #[test]
    fn wire_names_round_trip() {
        for datatype in DataType::ALL {
            assert_eq!(DataType::from_wire_name(datatype.wire_name()), Some(datatype));
        }
        assert_eq!(DataType::from_wire_name("STRING"), None);
    }
}
