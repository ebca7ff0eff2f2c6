//! A1111 "parameters" text: exact layout, A1111's reading rules, round trips over tricky
//! prompts, and the PNG text chunks that carry it.

use std::fs;

use image::{Rgb, RgbImage};
use kakusan_core::image_io::load_image;
use kakusan_core::png_meta::{
    encode_png_with_parameters, parameters_from_png_bytes, parse_a1111, read_png_parameters,
    write_png_with_parameters, GenerationParameters, ParametersError, PngTextError,
    KAKUSAN_VERSION,
};

fn cat() -> GenerationParameters {
    GenerationParameters {
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
        ..GenerationParameters::default()
    }
}

#[test]
fn known_example_is_written_exactly() {
    assert_eq!(
        cat().to_a1111_string(),
        "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, \
         Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly"
    );
}

#[test]
fn every_field_in_a1111_order() {
    let mut p = cat();
    p.negative_prompt.clear();
    p.schedule = Some("Karras".into());
    p.seed = 1234;
    p.width = 768;
    p.model_hash = Some("abcdef1234".into());
    p.model_name = Some("name".into());
    p.batch_size = Some(4);
    p.batch_pos = Some(2);
    p.denoising_strength = Some(0.6);
    p.clip_skip = Some(2);
    p.push_extra("ENSD", "31337").unwrap();
    p.push_extra("Lora hashes", "add_detail: 7c6bad76eb54, x: 1")
        .unwrap();
    p.version = Some("kakusan 0.1".into());
    assert_eq!(
        p.to_a1111_string(),
        "a cat\nSteps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1234, \
         Size: 768x512, Model hash: abcdef1234, Model: name, Batch size: 4, Batch pos: 2, \
         Denoising strength: 0.6, Clip skip: 2, ENSD: 31337, \
         Lora hashes: \"add_detail: 7c6bad76eb54, x: 1\", Version: kakusan 0.1"
    );
    assert_eq!(parse_a1111(&p.to_a1111_string()).unwrap(), p);
}

#[test]
fn version_constant_names_kakusan() {
    assert_eq!(
        KAKUSAN_VERSION,
        concat!("kakusan ", env!("CARGO_PKG_VERSION"))
    );
    let p = GenerationParameters {
        version: Some(KAKUSAN_VERSION.to_string()),
        ..cat()
    };
    assert!(p
        .to_a1111_string()
        .ends_with(&format!(", Version: {KAKUSAN_VERSION}")));
}

#[test]
fn parses_a1111s_own_docstring_example() {
    let text = "girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup, by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), detailed, intricate\n\
Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, disfigured, poorly drawn face, mutation, mutated, (extra_limb), (ugly), (poorly drawn hands), messy drawing\n\
Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b";
    let p = parse_a1111(text).unwrap();
    assert!(p.prompt.starts_with("girl with an artist's beret") && p.prompt.ends_with("intricate"));
    assert!(p.negative_prompt.starts_with("ugly, fat") && p.negative_prompt.ends_with("drawing"));
    assert_eq!(
        (p.steps, p.sampler.as_str(), p.cfg_scale),
        (20, "Euler a", 7.0)
    );
    assert_eq!((p.seed, p.width, p.height), (965400086, 512, 512));
    assert_eq!(p.model_hash.as_deref(), Some("45dee52b"));
    assert_eq!(p.model_name, None);
    assert_eq!(p.to_a1111_string(), text);
}

#[test]
fn parses_a_recent_a1111_infotext() {
    let text = "masterpiece, 1girl, <lora:add_detail:0.8>\nmultiple lines, (smile:1.2)\n\
Negative prompt: (worst quality:1.4), EasyNegative\n\
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3004417428, \
Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.45, \
Clip skip: 2, Hires upscale: 2, Hires upscaler: R-ESRGAN 4x+ Anime6B, \
Lora hashes: \"add_detail: 7c6bad76eb54\", TI hashes: \"EasyNegative: c74b4e810b03\", Version: v1.10.1";
    let p = parse_a1111(text).unwrap();
    assert_eq!(
        p.prompt,
        "masterpiece, 1girl, <lora:add_detail:0.8>\nmultiple lines, (smile:1.2)"
    );
    assert_eq!(p.negative_prompt, "(worst quality:1.4), EasyNegative");
    assert_eq!(p.schedule.as_deref(), Some("Karras"));
    assert_eq!(p.cfg_scale, 6.5);
    assert_eq!(p.seed, 3004417428);
    assert_eq!((p.width, p.height), (512, 768));
    assert_eq!(p.denoising_strength, Some(0.45));
    assert_eq!(p.clip_skip, Some(2));
    assert_eq!(p.version.as_deref(), Some("v1.10.1"));
    assert_eq!(
        p.extra,
        vec![
            ("Hires upscale".to_string(), "2".to_string()),
            (
                "Hires upscaler".to_string(),
                "R-ESRGAN 4x+ Anime6B".to_string()
            ),
            (
                "Lora hashes".to_string(),
                "add_detail: 7c6bad76eb54".to_string()
            ),
            (
                "TI hashes".to_string(),
                "EasyNegative: c74b4e810b03".to_string()
            ),
        ]
    );
    // Written back, the text is the same: known fields first, extras in order, then Version.
    assert_eq!(p.to_a1111_string(), text);
}

#[test]
fn a1111_reading_rules_for_text_that_cannot_round_trip() {
    // Lines are stripped, leading empty lines vanish, and a prompt line starting with
    // "Negative prompt:" starts the negative prompt: exactly what A1111 reads.
    let p = GenerationParameters {
        prompt: "\n  padded line  \nNegative prompt: inside the prompt".into(),
        negative_prompt: String::new(),
        ..cat()
    };
    let back = parse_a1111(&p.to_a1111_string()).unwrap();
    assert_eq!(back.prompt, "padded line");
    assert_eq!(back.negative_prompt, "inside the prompt");
    // "Negative prompt:" elsewhere in a line is just text.
    let p = GenerationParameters {
        prompt: "a sign saying Negative prompt: none".into(),
        ..cat()
    };
    assert_eq!(parse_a1111(&p.to_a1111_string()).unwrap(), p);
}

#[test]
fn a1111_parsing_details() {
    // Repeated key: first position, last value. Empty value: ignored. Quoted value that is
    // not valid JSON: kept raw.
    let text = "p\nSteps: 5, Sampler: Euler, ENSD: 1, CFG scale: 3, Seed: 9, Size: 64x32, \
                ENSD: 2, Empty: , Odd: \"x\" \"y\"";
    let p = parse_a1111(text).unwrap();
    assert_eq!(
        p.extra,
        vec![
            ("ENSD".into(), "2".into()),
            ("Odd".into(), "\"x\" \"y\"".into())
        ]
    );
    assert_eq!((p.width, p.height), (64, 32));
}

#[test]
fn parse_errors_are_specific() {
    assert_eq!(
        parse_a1111("just a prompt"),
        Err(ParametersError::NoParameterLine)
    );
    assert_eq!(parse_a1111(""), Err(ParametersError::NoParameterLine));
    assert_eq!(
        parse_a1111("p\nSteps: 20, Sampler: Euler a, CFG scale: 7, Size: 512x512"),
        Err(ParametersError::MissingField("Seed"))
    );
    let err = parse_a1111("p\nSteps: many, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512")
        .unwrap_err();
    assert!(err.to_string().contains("Steps: many"), "{err}");
    let err =
        parse_a1111("Steps: 1, Sampler: E, CFG scale: 7, Seed: 1, Size: 512 x 512").unwrap_err();
    assert!(err.to_string().contains("512x768"), "{err}");
    let err = parse_a1111("Steps: 1, Sampler: E, CFG scale: NaN, Seed: 1, Size: 8x8").unwrap_err();
    assert!(matches!(err, ParametersError::InvalidValue { .. }), "{err}");
}

/// A small deterministic generator (SplitMix64) for the property tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const PIECES: [&str; 24] = [
    "a cat",
    ",",
    ", ",
    ":",
    ": ",
    "\"",
    "\\",
    "(masterpiece:1.2)",
    "[blurry]",
    "Negative prompt:",
    "Negative prompt: x",
    "Steps: 20, Sampler: Euler a, CFG scale: 7",
    "日本語のプロンプト",
    "猫",
    "😀",
    "é",
    "  ",
    "\t",
    "BREAK",
    "AND",
    "<lora:x:0.5>",
    "{a|b}",
    "Size: 1x1",
    "x\u{3000}y",
];

/// A prompt A1111's format carries exactly: lines with no surrounding white space, no
/// line starting with "Negative prompt:", no leading empty line.
fn representable_text(rng: &mut Rng) -> String {
    let lines = rng.below(4);
    let mut out: Vec<String> = Vec::new();
    for i in 0..lines {
        let mut line = String::new();
        for _ in 0..rng.below(6) {
            line.push_str(rng.pick(&PIECES));
        }
        let line = line
            .trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
            .to_string();
        let line = if line.starts_with("Negative prompt:") {
            format!("x {line}")
        } else {
            line
        };
        if i == 0 && line.is_empty() {
            out.push("first".into());
        } else {
            out.push(line);
        }
    }
    out.join("\n")
}

fn any_value(rng: &mut Rng) -> String {
    (0..rng.below(5))
        .map(|_| rng.pick(&PIECES))
        .collect::<String>()
        + rng.pick(&["", " ", "\n", "\"", "a"])
}

#[test]
fn round_trip_property_over_tricky_prompts_and_values() {
    let mut rng = Rng(0x5EED);
    let extra_keys = [
        "ENSD",
        "Hires upscale",
        "Lora hashes",
        "TI hashes",
        "x-y/z",
        "Módulo 1",
        "キー",
    ];
    for case in 0..3000 {
        let mut p = GenerationParameters {
            prompt: representable_text(&mut rng),
            negative_prompt: representable_text(&mut rng),
            steps: rng.below(150) as u32,
            sampler: any_value(&mut rng),
            schedule: (rng.below(2) == 0).then(|| any_value(&mut rng)),
            cfg_scale: rng.below(600) as f64 / 20.0,
            seed: rng.next() >> rng.below(64),
            width: 8 * rng.below(256) as u32,
            height: 8 * rng.below(256) as u32,
            model_hash: (rng.below(2) == 0).then(|| format!("{:010x}", rng.next() >> 24)),
            model_name: (rng.below(2) == 0).then(|| any_value(&mut rng)),
            denoising_strength: (rng.below(2) == 0).then(|| rng.below(101) as f64 / 100.0),
            clip_skip: (rng.below(2) == 0).then(|| rng.below(12) as u32 + 1),
            batch_size: (rng.below(3) == 0).then(|| rng.below(8) as u32),
            batch_pos: (rng.below(3) == 0).then(|| rng.below(8) as u32),
            extra: Vec::new(),
            version: (rng.below(2) == 0).then(|| any_value(&mut rng)),
        };
        let mut used = Vec::new();
        for _ in 0..rng.below(4) {
            let key = rng.pick(&extra_keys);
            if !used.contains(&key) {
                used.push(key);
                p.push_extra(key, any_value(&mut rng)).unwrap();
            }
        }
        let text = p.to_a1111_string();
        let back = parse_a1111(&text).unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        assert_eq!(back, p, "case {case}:\n{text}");
        assert_eq!(back.to_a1111_string(), text, "case {case}");
    }
}

fn sample_image() -> RgbImage {
    RgbImage::from_fn(24, 16, |x, y| {
        Rgb([(x * 10) as u8, (y * 15) as u8, ((x + y) * 5) as u8])
    })
}

/// The chunk types of a PNG, in file order.
fn chunk_types(png: &[u8]) -> Vec<String> {
    let mut types = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        types.push(String::from_utf8_lossy(&png[at + 4..at + 8]).into_owned());
        at += 12 + len;
    }
    types
}

fn chunk_data<'a>(png: &'a [u8], kind: &str) -> &'a [u8] {
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        if &png[at + 4..at + 8] == kind.as_bytes() {
            return &png[at + 8..at + 8 + len];
        }
        at += 12 + len;
    }
    panic!("no {kind} chunk");
}

#[test]
fn japanese_prompt_round_trips_through_a_png_in_itxt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000-42.png");
    let mut p = cat();
    p.prompt = "桜の木の下の猫、水彩画\n夕焼け: 柔らかい光".into();
    p.negative_prompt = "ぼやけた, 低品質".into();
    let text = p.to_a1111_string();
    write_png_with_parameters(&path, &sample_image(), &text).unwrap();

    let read = read_png_parameters(&path).unwrap().unwrap();
    assert_eq!(read, text);
    assert_eq!(parse_a1111(&read).unwrap(), p);
    assert_eq!(load_image(&path).unwrap(), sample_image());

    let bytes = fs::read(&path).unwrap();
    let types = chunk_types(&bytes);
    assert_eq!(types.first().map(String::as_str), Some("IHDR"));
    let itxt = types.iter().position(|t| t == "iTXt").expect("iTXt chunk");
    assert!(
        itxt < types.iter().position(|t| t == "IDAT").unwrap(),
        "{types:?}"
    );
    assert!(!types.contains(&"tEXt".to_string()));
    // Pillow's layout: keyword, NUL, flag 0, method 0, empty language, NUL, empty
    // translated keyword, NUL, UTF-8 text.
    let mut expected = b"parameters\0\0\0\0\0".to_vec();
    expected.extend_from_slice(text.as_bytes());
    assert_eq!(chunk_data(&bytes, "iTXt"), expected.as_slice());
}

#[test]
fn latin1_text_goes_in_text_chunk() {
    let p = GenerationParameters {
        prompt: "café crème, naïve".into(),
        ..cat()
    };
    let text = p.to_a1111_string();
    let bytes = encode_png_with_parameters(&sample_image(), &text).unwrap();
    let types = chunk_types(&bytes);
    assert!(types.contains(&"tEXt".to_string()) && !types.contains(&"iTXt".to_string()));
    // tEXt holds Latin-1 bytes: "é" is the single byte 0xE9.
    let data = chunk_data(&bytes, "tEXt");
    assert!(
        data.starts_with(b"parameters\0caf\xE9 cr\xE8me, na\xEFve\n"),
        "{data:?}"
    );
    assert!(
        !data.windows(2).any(|w| w == [0xC3, 0xA9]),
        "must not be UTF-8"
    );
    assert_eq!(parameters_from_png_bytes(&bytes).unwrap(), Some(text));
}

/// CRC-32 (PNG's) for hand-built chunks.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

#[test]
fn reads_ztxt_and_text_after_the_image_data() {
    // zTXt written by the png crate.
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 2, 2);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.add_ztxt_chunk("parameters".into(), "zipped prompt\nSteps: 1".into())
            .unwrap();
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0; 12]).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(
        parameters_from_png_bytes(&bytes).unwrap().as_deref(),
        Some("zipped prompt\nSteps: 1")
    );

    // A tEXt chunk placed after IDAT, just before IEND.
    let plain = encode_png_with_parameters(&sample_image(), "").unwrap();
    let mut no_text = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut no_text, 24, 16);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(sample_image().as_raw()).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(parameters_from_png_bytes(&no_text).unwrap(), None);
    let iend = no_text.len() - 12;
    let mut late = no_text[..iend].to_vec();
    late.extend(chunk(b"tEXt", b"parameters\0late text"));
    late.extend_from_slice(&no_text[iend..]);
    assert_eq!(
        parameters_from_png_bytes(&late).unwrap().as_deref(),
        Some("late text")
    );
    // An empty parameters text is still a parameters chunk.
    assert_eq!(
        parameters_from_png_bytes(&plain).unwrap().as_deref(),
        Some("")
    );
}

#[test]
fn reading_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    let err = read_png_parameters(&missing).unwrap_err();
    assert!(matches!(err, PngTextError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.png"), "{err}");

    let text = dir.path().join("notes.png");
    fs::write(&text, "not a png").unwrap();
    let err = read_png_parameters(&text).unwrap_err();
    assert!(matches!(err, PngTextError::NotPng { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.png"), "{err}");

    let mut broken = encode_png_with_parameters(&sample_image(), "x").unwrap();
    broken[20] ^= 0xFF; // inside IHDR: its CRC no longer matches
    let path = dir.path().join("broken.png");
    fs::write(&path, &broken).unwrap();
    let err = read_png_parameters(&path).unwrap_err();
    assert!(matches!(err, PngTextError::Decode { .. }), "{err:?}");
}

#[test]
fn failed_png_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.png");
    // A 0x0 picture cannot be encoded: nothing may appear in the folder.
    let err = write_png_with_parameters(&path, &RgbImage::new(0, 0), "p").unwrap_err();
    assert!(matches!(err, PngTextError::Encode(_)), "{err:?}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn plain_png_keeps_the_pixels_and_carries_no_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.png");
    let img = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 40, y as u8 * 80, 7]));
    kakusan_core::png_meta::write_png(&path, &img).unwrap();
    assert_eq!(load_image(&path).unwrap(), img);
    assert_eq!(read_png_parameters(&path).unwrap(), None);
}
