//! AUTOMATIC1111's `parameters` text (prompt, `Negative prompt:` line, then one line of
//! `Key: value` pairs) and reading/writing it in a PNG text chunk.

use std::path::{Path, PathBuf};

use image::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum PngMetaError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("encoding PNG: {0}")]
    Encode(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationParameters {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub sampler: String,
    pub schedule: Option<String>,
    pub cfg_scale: f64,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    pub model_hash: Option<String>,
    pub model_name: Option<String>,
    pub denoising_strength: Option<f64>,
    pub clip_skip: Option<usize>,
    pub extra: Vec<(String, String)>,
}

/// A1111's quote(): values with `,`, `:` or `"` (or newlines) are written as JSON strings.
fn quote(v: &str) -> String {
    if !v.contains([',', ':', '"', '\n']) {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for ch in v.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Numbers as Python's str() prints them, A1111-style: 7.0 -> "7", 7.5 -> "7.5".
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl GenerationParameters {
    pub fn to_a1111_string(&self) -> String {
        let mut text = self.prompt.clone();
        if !self.negative_prompt.is_empty() {
            text.push_str("\nNegative prompt: ");
            text.push_str(&self.negative_prompt);
        }
        let mut pairs: Vec<(String, String)> = vec![
            ("Steps".into(), self.steps.to_string()),
            ("Sampler".into(), self.sampler.clone()),
        ];
        if let Some(s) = &self.schedule {
            pairs.push(("Schedule type".into(), s.clone()));
        }
        pairs.push(("CFG scale".into(), number(self.cfg_scale)));
        pairs.push(("Seed".into(), self.seed.to_string()));
        pairs.push(("Size".into(), format!("{}x{}", self.width, self.height)));
        if let Some(h) = &self.model_hash {
            pairs.push(("Model hash".into(), h.clone()));
        }
        if let Some(m) = &self.model_name {
            pairs.push(("Model".into(), m.clone()));
        }
        if let Some(d) = self.denoising_strength {
            pairs.push(("Denoising strength".into(), number(d)));
        }
        if let Some(c) = self.clip_skip {
            pairs.push(("Clip skip".into(), c.to_string()));
        }
        pairs.extend(self.extra.iter().cloned());
        pairs.push((
            "Version".into(),
            format!("kakusan {}", env!("CARGO_PKG_VERSION")),
        ));
        let line: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}: {}", quote(v)))
            .collect();
        text.push('\n');
        text.push_str(&line.join(", "));
        text
    }
}

/// Encodes `img` as PNG with a `parameters` text chunk (tEXt if Latin-1, else iTXt).
pub fn encode_png_with_parameters(img: &RgbImage, text: &str) -> Result<Vec<u8>, PngMetaError> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, img.width(), img.height());
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let latin1 = text.chars().all(|c| (c as u32) < 256);
        let res = if latin1 {
            enc.add_text_chunk("parameters".into(), text.into())
        } else {
            enc.add_itxt_chunk("parameters".into(), text.into())
        };
        res.map_err(|e| PngMetaError::Encode(e.to_string()))?;
        let mut w = enc
            .write_header()
            .map_err(|e| PngMetaError::Encode(e.to_string()))?;
        w.write_image_data(img.as_raw())
            .map_err(|e| PngMetaError::Encode(e.to_string()))?;
        w.finish()
            .map_err(|e| PngMetaError::Encode(e.to_string()))?;
    }
    Ok(bytes)
}

/// The `parameters` text of a PNG, if it has one.
pub fn read_png_parameters(path: &Path) -> Result<Option<String>, PngMetaError> {
    let err = |reason: String| PngMetaError::Read {
        path: path.into(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let reader = decoder
        .read_info()
        .map_err(|e| err(format!("not a readable PNG: {e}")))?;
    let info = reader.info();
    if let Some(t) = info
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters")
    {
        return Ok(Some(t.text.clone()));
    }
    if let Some(t) = info
        .compressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters")
    {
        return t.get_text().map(Some).map_err(|e| err(e.to_string()));
    }
    if let Some(t) = info.utf8_text.iter().find(|t| t.keyword == "parameters") {
        return t.get_text().map(Some).map_err(|e| err(e.to_string()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1111_layout() {
        let p = GenerationParameters {
            prompt: "a cat".into(),
            negative_prompt: "blurry".into(),
            steps: 20,
            sampler: "Euler a".into(),
            cfg_scale: 7.0,
            seed: 42,
            width: 512,
            height: 512,
            model_hash: Some("6ce0161689".into()),
            model_name: Some("v1-5-pruned-emaonly".into()),
            ..Default::default()
        };
        assert_eq!(
            p.to_a1111_string(),
            format!(
                "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: kakusan {}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn png_text_round_trips_latin1_and_japanese() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::new(4, 4);
        for text in ["a cat, (best:1.2)\nSteps: 20", "赤い丸、青い背景\nSteps: 5"] {
            let p = dir.path().join("x.png");
            std::fs::write(&p, encode_png_with_parameters(&img, text).unwrap()).unwrap();
            assert_eq!(read_png_parameters(&p).unwrap().as_deref(), Some(text));
        }
    }

    #[test]
    fn non_png_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        std::fs::write(&p, "nope").unwrap();
        assert!(read_png_parameters(&p).is_err());
    }
}
