//! The safetensors store on small files written here: valid files (dtype casts, slices,
//! shards) and every way a file can be bad (missing, truncated, corrupt header, pickle,
//! unsupported dtype), each with a message that names the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use kakusan_models::weights::{SafetensorsStore, WeightsError};

/// Writes a safetensors file by hand: `(name, dtype string, shape, raw bytes)`.
fn write_raw(path: &Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    std::fs::write(path, file).unwrap();
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect()
}

fn save(path: &Path, tensors: &[(&str, Tensor)]) {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn err_of(path: &Path) -> WeightsError {
    SafetensorsStore::open(path).unwrap_err()
}

fn mentions(err: &WeightsError, path: &Path) -> bool {
    err.to_string().contains(&path.display().to_string())
}

#[test]
fn reads_tensors_and_casts_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let values = [0.1f32, -2.5, 3.0, 65504.0, 1.0e-3, 0.0];
    write_raw(
        &path,
        &[
            ("half", "F16", vec![2, 3], f16_bytes(&values)),
            ("full", "F32", vec![3, 2], f32_bytes(&values)),
            ("scalar", "F32", vec![], f32_bytes(&[7.0])),
        ],
    );
    let store = SafetensorsStore::open(&path).unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.shape("half"), Some(&[2, 3][..]));
    assert!(store.contains("full") && !store.contains("nope"));

    // F16 -> F32 widens exactly.
    let t = store.load("half", DType::F32, &Device::Cpu).unwrap();
    let want: Vec<f32> = values
        .iter()
        .map(|v| half::f16::from_f32(*v).to_f32())
        .collect();
    assert_eq!(t.dims(), &[2, 3]);
    assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
    // F32 read as F32 is bit-exact; as F16 it rounds like torch's .half().
    let t = store.load("full", DType::F32, &Device::Cpu).unwrap();
    assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), values);
    let t = store.load("full", DType::F16, &Device::Cpu).unwrap();
    assert_eq!(t.dtype(), DType::F16);
    let back: Vec<f32> = t
        .flatten_all()
        .unwrap()
        .to_vec1::<half::f16>()
        .unwrap()
        .iter()
        .map(|h| h.to_f32())
        .collect();
    assert_eq!(back, want);
    // BF16 too.
    let t = store.load("full", DType::BF16, &Device::Cpu).unwrap();
    assert_eq!(t.dtype(), DType::BF16);
    // Scalars.
    let t = store.load("scalar", DType::F32, &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[] as &[usize]);
    assert_eq!(t.to_scalar::<f32>().unwrap(), 7.0);
    // Rows of a fused tensor: rows 1..2 of [3, 2].
    let t = store
        .load_rows("full", 1..2, DType::F32, &Device::Cpu)
        .unwrap();
    assert_eq!(t.to_vec2::<f32>().unwrap(), vec![vec![3.0, 65504.0]]);
    assert!(store
        .load_rows("full", 2..4, DType::F32, &Device::Cpu)
        .is_err());
    // Integer targets are refused.
    assert!(matches!(
        store.load("full", DType::U8, &Device::Cpu),
        Err(WeightsError::UnsupportedTargetDtype { .. })
    ));
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.safetensors");
    let err = err_of(&path);
    assert!(matches!(err, WeightsError::MissingFile { .. }), "{err}");
    assert!(mentions(&err, &path));
}

#[test]
fn truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    write_raw(&good, &[("w", "F32", vec![4, 4], f32_bytes(&[1.0; 16]))]);
    let bytes = std::fs::read(&good).unwrap();

    // Cut inside the tensor data.
    let cut_data = dir.path().join("cut_data.safetensors");
    std::fs::write(&cut_data, &bytes[..bytes.len() - 10]).unwrap();
    let err = err_of(&cut_data);
    assert!(matches!(err, WeightsError::Truncated { .. }), "{err}");
    assert!(mentions(&err, &cut_data));
    assert!(err.to_string().contains("download"), "{err}");

    // Cut inside the header.
    let cut_header = dir.path().join("cut_header.safetensors");
    std::fs::write(&cut_header, &bytes[..20]).unwrap();
    let err = err_of(&cut_header);
    assert!(matches!(err, WeightsError::Truncated { .. }), "{err}");
    assert!(mentions(&err, &cut_header));

    // Shorter than the length field.
    let tiny = dir.path().join("tiny.safetensors");
    std::fs::write(&tiny, [1u8, 0, 0]).unwrap();
    let err = err_of(&tiny);
    assert!(matches!(err, WeightsError::Truncated { .. }), "{err}");

    // Empty file.
    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, []).unwrap();
    assert!(matches!(err_of(&empty), WeightsError::Truncated { .. }));
}

#[test]
fn data_offsets_beyond_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.safetensors");
    // The header claims 64 bytes for a [4, 4] f32 tensor; only 32 follow.
    let header = br#"{"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend(vec![0u8; 32]);
    std::fs::write(&path, file).unwrap();
    let err = err_of(&path);
    match &err {
        WeightsError::Truncated { needed, actual, .. } => assert!(needed > actual),
        other => panic!("expected Truncated, got {other}"),
    }
    assert!(mentions(&err, &path));
}

#[test]
fn corrupt_headers() {
    let dir = tempfile::tempdir().unwrap();
    for (name, header) in [
        (
            "json.safetensors",
            &br#"{"w":{"dtype":"F32","shape":[4,4],"data_off"#[..],
        ),
        ("garbage.safetensors", &b"\xff\xfe not json at all"[..]),
        // Offsets that disagree with shape x dtype.
        (
            "sizes.safetensors",
            &br#"{"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,8]}}"#[..],
        ),
        (
            "dtype.safetensors",
            &br#"{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#[..],
        ),
    ] {
        let path = dir.path().join(name);
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend(vec![0u8; 64]);
        std::fs::write(&path, file).unwrap();
        let err = err_of(&path);
        assert!(
            matches!(err, WeightsError::CorruptHeader { .. }),
            "{name}: {err}"
        );
        assert!(mentions(&err, &path), "{name}: {err}");
    }
    // An absurd header length.
    let path = dir.path().join("huge.safetensors");
    let mut file = u64::MAX.to_le_bytes().to_vec();
    file.extend(vec![b' '; 64]);
    std::fs::write(&path, file).unwrap();
    assert!(matches!(err_of(&path), WeightsError::CorruptHeader { .. }));
}

#[test]
fn pickles_are_refused_by_name_and_by_content() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "model.ckpt",
        "model.pt",
        "model.pth",
        "pytorch_model.bin",
        "MODEL.CKPT",
    ] {
        let path = dir.path().join(name);
        // Refused before opening: the file does not even need to exist.
        let err = err_of(&path);
        assert!(
            matches!(err, WeightsError::PickleRefused { .. }),
            "{name}: {err}"
        );
        let message = err.to_string();
        assert!(message.contains(name), "{message}");
        assert!(message.contains("arbitrary code"), "{message}");
        assert!(message.contains("safetensors"), "{message}");
    }
    // A torch.save zip archive renamed to .safetensors.
    let path = dir.path().join("renamed.safetensors");
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend(vec![0u8; 200]);
    std::fs::write(&path, zip).unwrap();
    let err = err_of(&path);
    assert!(matches!(err, WeightsError::PickleRefused { .. }), "{err}");
    assert!(err.to_string().contains("despite its name"), "{err}");
}

#[test]
fn unsupported_dtype_names_tensor_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ints.safetensors");
    write_raw(
        &path,
        &[
            ("position_ids", "I64", vec![1, 2], vec![0u8; 16]),
            ("w", "F32", vec![1], f32_bytes(&[1.0])),
        ],
    );
    // Opening works (unused int buffers are common in checkpoints) ...
    let store = SafetensorsStore::open(&path).unwrap();
    assert!(store.load("w", DType::F32, &Device::Cpu).is_ok());
    // ... loading one as weights does not.
    let err = store
        .load("position_ids", DType::F32, &Device::Cpu)
        .unwrap_err();
    assert!(
        matches!(err, WeightsError::UnsupportedDtype { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("position_ids") && message.contains("I64"),
        "{message}"
    );
    assert!(mentions(&err, &path));
}

#[test]
fn sharded_sets_are_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("model-00001-of-00002.safetensors");
    let b = dir.path().join("model-00002-of-00002.safetensors");
    save(
        &a,
        &[("x", Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap())],
    );
    save(&b, &[("y", Tensor::new(&[3f32], &Device::Cpu).unwrap())]);
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(
        &index,
        serde_json::json!({
            "metadata": {"total_size": 12},
            "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}
        })
        .to_string(),
    )
    .unwrap();
    let store = SafetensorsStore::open(&index).unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(store.paths().len(), 2);
    let y = store.load("y", DType::F32, &Device::Cpu).unwrap();
    assert_eq!(y.to_vec1::<f32>().unwrap(), vec![3.0]);
    let x = store.info("x").unwrap();
    assert_eq!(x.path, a.as_path());

    // The same key in two shards.
    let c = dir.path().join("dup.safetensors");
    save(&c, &[("x", Tensor::new(&[9f32], &Device::Cpu).unwrap())]);
    let err = SafetensorsStore::open_files(&[a.clone(), c]).unwrap_err();
    assert!(matches!(err, WeightsError::DuplicateKey { .. }), "{err}");

    // An index naming a tensor its shard lacks.
    let bad = dir.path().join("bad.safetensors.index.json");
    std::fs::write(
        &bad,
        serde_json::json!({"weight_map": {"z": "model-00001-of-00002.safetensors"}}).to_string(),
    )
    .unwrap();
    let err = SafetensorsStore::open(&bad).unwrap_err();
    assert!(matches!(err, WeightsError::BadShardIndex { .. }), "{err}");

    // An index pointing at a missing shard.
    let missing = dir.path().join("missing.safetensors.index.json");
    std::fs::write(
        &missing,
        serde_json::json!({"weight_map": {"z": "gone.safetensors"}}).to_string(),
    )
    .unwrap();
    let err = SafetensorsStore::open(&missing).unwrap_err();
    assert!(
        matches!(err, WeightsError::MissingFile { ref path } if path.ends_with("gone.safetensors")),
        "{err}"
    );
}

#[test]
fn metadata_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("meta.safetensors");
    let header = br#"{"__metadata__":{"modelspec.prediction_type":"v"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend(f32_bytes(&[1.0]));
    std::fs::write(&path, file).unwrap();
    let store = SafetensorsStore::open(&path).unwrap();
    assert_eq!(store.metadata("modelspec.prediction_type"), Some("v"));
    assert_eq!(store.metadata("absent"), None);
}

/// Loading drops the tensor's mapped pages from memory after the copy: loading the same
/// tensors again (and a neighbour that shares a page with them, in another dtype) still
/// gives the file's values.
#[test]
fn tensors_load_again_after_their_pages_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let a: Vec<f32> = (0..300_001).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..5_003).map(|i| i as f32 - 17.5).collect();
    write_raw(
        &path,
        &[
            ("a", "F32", vec![a.len()], f32_bytes(&a)),
            ("b", "F32", vec![b.len()], f32_bytes(&b)),
        ],
    );
    let store = SafetensorsStore::open(&path).unwrap();
    let dev = Device::Cpu;
    for _ in 0..2 {
        let got = store.load("a", DType::F32, &dev).unwrap();
        assert_eq!(got.to_vec1::<f32>().unwrap(), a);
        let got = store.load("b", DType::F64, &dev).unwrap();
        let want: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        assert_eq!(got.to_vec1::<f64>().unwrap(), want);
    }
}
