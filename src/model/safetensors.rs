//! The SafeTensors container of a model file, made byte-reproducible: tensors in name order,
//! the header's keys sorted, so the same weights give the same bytes.

use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use std::collections::BTreeMap;

fn header_len(bytes: &[u8]) -> Result<usize> {
    if bytes.len() < 8 {
        bail!("not a SafeTensors file (too short)");
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > 100_000_000 || 8 + n > bytes.len() as u64 {
        bail!("not a SafeTensors file (header length {n})");
    }
    Ok(n as usize)
}

/// The header's JSON.
pub fn header(bytes: &[u8]) -> Result<BTreeMap<String, Value>> {
    let n = header_len(bytes)?;
    serde_json::from_slice(&bytes[8..8 + n])
        .map_err(|e| anyhow!("the SafeTensors header is not JSON: {e}"))
}

/// The header's `__metadata__` map.
pub fn metadata(bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    match header(bytes)?.get("__metadata__") {
        None => Ok(BTreeMap::new()),
        Some(m) => serde_json::from_value(m.clone())
            .map_err(|e| anyhow!("the SafeTensors metadata is not a map of strings: {e}")),
    }
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let b: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
            let mut out = serde_json::Map::new();
            for (k, v) in b {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Re-lay a SafeTensors buffer canonically: tensors' data in name order, keys sorted, the
/// header padded with spaces to a multiple of 8 bytes (as the format allows).
pub fn canonical(bytes: &[u8]) -> Result<Vec<u8>> {
    let n = header_len(bytes)?;
    let data = &bytes[8 + n..];
    let h = header(bytes)?;
    let mut out_header = serde_json::Map::new();
    let mut out_data = Vec::with_capacity(data.len());
    let mut entries: BTreeMap<String, Value> = BTreeMap::new();
    for (name, v) in &h {
        if name == "__metadata__" {
            continue;
        }
        let off = v
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| anyhow!("tensor {name} has no data offsets"))?;
        let (s, e) = (
            off[0].as_u64().unwrap_or(u64::MAX) as usize,
            off[1].as_u64().unwrap_or(u64::MAX) as usize,
        );
        if s > e || e > data.len() {
            bail!("tensor {name} has data offsets outside the file");
        }
        let start = out_data.len();
        out_data.extend_from_slice(&data[s..e]);
        let mut t = v.clone();
        t["data_offsets"] = serde_json::json!([start, out_data.len()]);
        entries.insert(name.clone(), sorted(&t));
    }
    if let Some(m) = h.get("__metadata__") {
        out_header.insert("__metadata__".into(), sorted(m));
    }
    for (k, v) in entries {
        out_header.insert(k, v);
    }
    let mut text = serde_json::to_vec(&Value::Object(out_header))?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + out_data.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&out_data);
    Ok(out)
}

/// A SafeTensors file of f32 tensors with `metadata`, laid out canonically (see
/// [`canonical`]).
pub fn write(
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    let mut data: Vec<u8> = Vec::new();
    let mut sorted: Vec<&(String, Vec<usize>, &[f32])> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, shape, values) in sorted {
        let start = data.len();
        for v in values.iter() {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"data_offsets": [start, data.len()], "dtype": "F32", "shape": shape}),
        );
    }
    let mut text = serde_json::to_vec(&Value::Object(header))?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + data.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&data);
    canonical(&out)
}

/// Named f32 tensors: name → (shape, values).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of a SafeTensors file: name → (shape, f32 values). Tensors of another type
/// or whose size does not match their shape are errors.
pub fn read(bytes: &[u8]) -> Result<Tensors> {
    let n = header_len(bytes)?;
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    for (name, v) in header(bytes)? {
        if name == "__metadata__" {
            continue;
        }
        if v.get("dtype").and_then(|d| d.as_str()) != Some("F32") {
            bail!("tensor {name} is not F32");
        }
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| anyhow!("tensor {name} has no shape"))?;
        let off = v
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| anyhow!("tensor {name} has no data offsets"))?;
        let (s, e) = (
            off[0].as_u64().unwrap_or(u64::MAX) as usize,
            off[1].as_u64().unwrap_or(u64::MAX) as usize,
        );
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if s > e || e > data.len() || count.and_then(|c| c.checked_mul(4)) != Some(e - s) {
            bail!("tensor {name} has data offsets that do not fit its shape or the file");
        }
        let values = data[s..e]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        out.insert(name, (shape, values));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn order_does_not_matter() {
        let a = file(
            r#"{"__metadata__":{"z":"1","a":"2"},"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#,
            &[1, 2, 3],
        );
        let b = file(
            r#"{"b":{"shape":[1],"dtype":"U8","data_offsets":[0,1]},"__metadata__":{"a":"2","z":"1"},"w":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
            &[3, 1, 2],
        );
        let (ca, cb) = (canonical(&a).unwrap(), canonical(&b).unwrap());
        assert_eq!(ca, cb);
        assert_eq!(metadata(&ca).unwrap()["a"], "2");
        assert_eq!(header_len(&ca).unwrap() % 8, 0);
        assert!(canonical(&a[..5]).is_err());
    }

    #[test]
    fn written_tensors_read_back() {
        let w = [1.0f32, -2.5, 3.25, 0.0];
        let b = [0.5f32];
        let meta: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
        let bytes = write(
            &[
                ("z.weight".into(), vec![2, 2], &w[..]),
                ("a.bias".into(), vec![1], &b[..]),
            ],
            &meta,
        )
        .unwrap();
        assert_eq!(metadata(&bytes).unwrap(), meta);
        let t = read(&bytes).unwrap();
        assert_eq!(t["z.weight"], (vec![2, 2], w.to_vec()));
        assert_eq!(t["a.bias"], (vec![1], b.to_vec()));
        assert_eq!(canonical(&bytes).unwrap(), bytes, "already canonical");
    }
}
