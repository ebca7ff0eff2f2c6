//! Pictures in and out, checked against the reference tools' own numbers: Pillow's LANCZOS
//! resize (bit-exact), diffusers' post-processing rounding (exact), and clear errors for files
//! that are not pictures.
//!
//! Reference values were produced with Pillow 13.0 / diffusers 0.42.1 / torch (CPU) from the
//! parity virtualenv:
//! ```python
//! from PIL import Image; import numpy as np
//! def pattern(w, h):  # the same formula as `pattern` below
//!     a = np.zeros((h, w, 3), np.uint8)
//!     for y in range(h):
//!         for x in range(w):
//!             for c in range(3):
//!                 a[y, x, c] = (x * 37 + y * 91 + c * 53 + (x * y) % 17 * 11) % 256
//!     return a
//! out = np.asarray(Image.fromarray(pattern(w, h)).resize((ow, oh), resample=Image.LANCZOS))
//! fnv1a64(out.tobytes())
//! # rounding: VaeImageProcessor().postprocess(t, output_type="pil") for the values below
//! ```

use std::fs;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use kakusan_core::image_io::{
    image_to_tensor, images_to_tensor, load_image, resize_just, tensor_to_images, unit_to_pixel,
    LoadImageError,
};

fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = |c: u32| ((x * 37 + y * 91 + c * 53 + (x * y) % 17 * 11) % 256) as u8;
        Rgb([v(0), v(1), v(2)])
    })
}

fn checker(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v: u8 = if ((x / 2) + (y / 3)) % 2 == 0 { 255 } else { 0 };
        Rgb([v, 255 - v, v / 2])
    })
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn resize_matches_pillow_lanczos_exactly_small() {
    let out = resize_just(&pattern(7, 5), 3, 4);
    let expected: [u8; 36] = [
        41, 103, 151, 125, 162, 186, 169, 150, 123, 169, 170, 148, 143, 120, 101, 92, 109, 145,
        116, 114, 99, 135, 124, 110, 153, 84, 123, 102, 166, 130, 109, 137, 114, 131, 168, 107,
    ];
    assert_eq!(out.as_raw().as_slice(), &expected);
    assert_eq!(
        resize_just(&pattern(1, 1), 3, 2).as_raw(),
        &[0, 53, 106].repeat(6)
    );
    assert_eq!(
        resize_just(&checker(33, 17), 1, 1).as_raw(),
        &[128, 127, 64]
    );
}

#[test]
fn resize_matches_pillow_lanczos_exactly_hashes() {
    // (source, width, height, out width, out height, FNV-1a 64 of Pillow's output bytes)
    let cases: [(&str, u32, u32, u32, u32, u64); 7] = [
        ("pattern", 4, 3, 9, 7, 0x12a8098da2dbec6c),
        ("pattern", 64, 48, 37, 29, 0x766e41959833de27),
        ("pattern", 50, 40, 50, 23, 0x296292063d614d17),
        ("pattern", 13, 11, 29, 11, 0x57780c8d5844fb0d),
        ("checker", 16, 16, 5, 7, 0xe7fa1eb1ff86a0ed),
        ("checker", 16, 16, 40, 33, 0x6c14e24f627e2cc0),
        ("pattern", 300, 200, 512, 512, 0xf9603d57344c5dfe),
    ];
    for (kind, w, h, ow, oh, want) in cases {
        let src = if kind == "pattern" {
            pattern(w, h)
        } else {
            checker(w, h)
        };
        let out = resize_just(&src, ow, oh);
        assert_eq!(out.dimensions(), (ow, oh));
        assert_eq!(fnv1a64(out.as_raw()), want, "{kind} {w}x{h} -> {ow}x{oh}");
    }
}

#[test]
fn resize_gives_exact_dimensions_ignoring_aspect() {
    let src = pattern(640, 480);
    for (w, h) in [(512, 512), (512, 768), (64, 8), (1, 300)] {
        assert_eq!(resize_just(&src, w, h).dimensions(), (w, h));
    }
}

#[test]
fn postprocess_rounding_matches_diffusers() {
    // Red channel inputs (f32 bits): plain values, NaN, and values whose scaled result is an
    // exact k + 0.5, where numpy's round-half-to-even shows (64.5 -> 64, 65.5 -> 66, ...).
    let red: [u32; 19] = [
        0xbfc00000, 0xbf800000, 0xbf7fbe77, 0xbf000000, 0x0, 0x3e800000, 0x3f000000, 0x3f7fbe77,
        0x3f800000, 0x3fd9999a, 0x7fc00000, 0xbefcfcfd, 0xbef8f8f9, 0xbef4f4f5, 0xbef0f0f1,
        0xbeececed, 0xbee8e8e9, 0x80000004, 0x3c00807d,
    ];
    let blue: [u32; 19] = [
        0xbf000000, 0xbeaaaaab, 0xbeaa7efa, 0xbe2aaaab, 0x0, 0x3daaaaab, 0x3e2aaaab, 0x3eaa7efa,
        0x3eaaaaab, 0x3f111111, 0x0, 0xbe28a8a9, 0xbe25fb51, 0xbe234df9, 0xbe20a0a1, 0xbe1df349,
        0xbe1b45f1, 0x80000001, 0x3b2b55fc,
    ];
    let r: Vec<f32> = red.iter().map(|&b| f32::from_bits(b)).collect();
    let g: Vec<f32> = r
        .iter()
        .map(|&v| if v.is_nan() { 0.0 } else { -v })
        .collect();
    let b: Vec<f32> = blue.iter().map(|&b| f32::from_bits(b)).collect();
    let data: Vec<f32> = r.iter().chain(&g).chain(&b).copied().collect();
    let t = Tensor::from_vec(data, (1, 3, 1, 19), &Device::Cpu).unwrap();
    let images = tensor_to_images(&t).unwrap();
    assert_eq!(images.len(), 1);
    let want_r = [
        0, 0, 0, 64, 128, 159, 191, 255, 255, 255, 0, 64, 66, 66, 68, 68, 70, 128, 128,
    ];
    let want_g = [
        255, 255, 255, 191, 128, 96, 64, 0, 0, 0, 128, 190, 190, 188, 188, 186, 186, 128, 126,
    ];
    let want_b = [
        64, 85, 85, 106, 128, 138, 149, 170, 170, 200, 128, 106, 107, 107, 108, 108, 108, 128, 128,
    ];
    for x in 0..19 {
        let p = images[0].get_pixel(x, 0).0;
        assert_eq!(
            p,
            [want_r[x as usize], want_g[x as usize], want_b[x as usize]],
            "x={x}"
        );
    }
    // Truncation (A1111's astype) would give 127 here; diffusers rounds to 128.
    assert_eq!(unit_to_pixel(0.0), 128);
}

#[test]
fn image_tensor_image_round_trip_is_exact() {
    let img = pattern(17, 9);
    let t = image_to_tensor(&img).unwrap();
    assert_eq!(t.dims(), &[1, 3, 9, 17]);
    assert_eq!(t.dtype(), DType::F32);
    let (min, max) = (
        t.min_all().unwrap().to_scalar::<f32>().unwrap(),
        t.max_all().unwrap().to_scalar::<f32>().unwrap(),
    );
    assert!((-1.0..=1.0).contains(&min) && (-1.0..=1.0).contains(&max));
    assert_eq!(tensor_to_images(&t).unwrap(), vec![img]);
}

#[test]
fn tensor_image_tensor_round_trip_is_exact_on_the_pixel_grid() {
    let a = pattern(5, 4);
    let b = checker(5, 4);
    let t = images_to_tensor(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(t.dims(), &[2, 3, 4, 5]);
    let back = tensor_to_images(&t).unwrap();
    assert_eq!(back, vec![a, b]);
    let t2 = images_to_tensor(&back).unwrap();
    let diff = (t - t2).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn half_precision_tensors_are_accepted() {
    let img = pattern(6, 3);
    let t = image_to_tensor(&img).unwrap().to_dtype(DType::F16).unwrap();
    let back = &tensor_to_images(&t).unwrap()[0];
    // f16 has 11 significant bits: values in [-1, 1] move by at most 2^-11, i.e. < 0.07 of a
    // level after scaling by 127.5, so rounding can change a pixel by at most one level.
    for (p, q) in back.pixels().zip(img.pixels()) {
        for c in 0..3 {
            assert!(p.0[c].abs_diff(q.0[c]) <= 1);
        }
    }
}

fn save(img: &image::DynamicImage, path: &Path, format: image::ImageFormat) {
    img.save_with_format(path, format).unwrap();
}

#[test]
fn loads_png_bmp_webp_exactly_and_jpeg_approximately() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(12, 7);
    let dynamic = image::DynamicImage::ImageRgb8(img.clone());
    for (name, format) in [
        ("a.png", image::ImageFormat::Png),
        ("a.bmp", image::ImageFormat::Bmp),
        ("a.webp", image::ImageFormat::WebP),
    ] {
        let path = dir.path().join(name);
        save(&dynamic, &path, format);
        assert_eq!(load_image(&path).unwrap(), img, "{name}");
    }
    // The format comes from the contents, not the name.
    let misnamed = dir.path().join("really-a-png.jpg");
    save(&dynamic, &misnamed, image::ImageFormat::Png);
    assert_eq!(load_image(&misnamed).unwrap(), img);

    let flat = RgbImage::from_pixel(16, 16, Rgb([200, 30, 90]));
    let path = dir.path().join("a.jpeg");
    save(
        &image::DynamicImage::ImageRgb8(flat),
        &path,
        image::ImageFormat::Jpeg,
    );
    let loaded = load_image(&path).unwrap();
    assert_eq!(loaded.dimensions(), (16, 16));
    // A flat colour survives JPEG within a few levels (chroma quantisation).
    for p in loaded.pixels() {
        for (c, want) in [200u8, 30, 90].iter().enumerate() {
            assert!(p.0[c].abs_diff(*want) <= 4, "{:?}", p.0);
        }
    }
}

#[test]
fn transparent_png_is_flattened_on_white() {
    let dir = tempfile::tempdir().unwrap();
    let rgba = RgbaImage::from_fn(3, 1, |x, _| match x {
        0 => Rgba([0, 0, 0, 0]),
        1 => Rgba([0, 128, 255, 128]),
        _ => Rgba([10, 20, 30, 255]),
    });
    let path = dir.path().join("alpha.png");
    save(
        &image::DynamicImage::ImageRgba8(rgba),
        &path,
        image::ImageFormat::Png,
    );
    let loaded = load_image(&path).unwrap();
    // Values as Pillow's paste-with-mask onto "#ffffff" gives them (A1111's images.flatten).
    assert_eq!(loaded.as_raw(), &[255, 255, 255, 127, 191, 255, 10, 20, 30]);
}

/// A baseline JPEG with an EXIF APP1 segment holding only Orientation = `orientation`.
fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD right after the header
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // padding of the 4-byte value field
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    // Left half black, right half white, 16x8.
    let img = RgbImage::from_fn(
        16,
        8,
        |x, _| if x < 8 { Rgb([0; 3]) } else { Rgb([255; 3]) },
    );
    let path = dir.path().join("rotated.jpg");
    fs::write(&path, jpeg_with_orientation(&img, 6)).unwrap();
    let loaded = load_image(&path).unwrap();
    // Orientation 6 = rotate 90° clockwise to display: 16x8 becomes 8x16, left goes to top.
    assert_eq!(loaded.dimensions(), (8, 16));
    assert!(loaded.get_pixel(4, 2).0[0] < 40, "top should be black");
    assert!(loaded.get_pixel(4, 13).0[0] > 215, "bottom should be white");
}

#[test]
fn missing_file_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.png");
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, LoadImageError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.png"), "{err}");
}

#[test]
fn non_image_file_error_says_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prompt.png");
    fs::write(&path, "a cat, masterpiece\n").unwrap();
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, LoadImageError::NotAnImage { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("prompt.png"), "{message}");
    assert!(
        message.contains("text starting with \"a cat, masterpiece"),
        "{message}"
    );

    let empty = dir.path().join("empty.jpg");
    fs::write(&empty, b"").unwrap();
    assert!(load_image(&empty)
        .unwrap_err()
        .to_string()
        .contains("an empty file"));

    let err = load_image(dir.path()).unwrap_err();
    assert!(
        matches!(err, LoadImageError::IsADirectory { .. }),
        "{err:?}"
    );
}

#[test]
fn unsupported_and_corrupt_pictures_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    // TIFF is recognised by its magic bytes but not decoded (no `tiff` feature).
    let tiff = dir.path().join("scan.tif");
    fs::write(&tiff, b"II*\x00\x08\x00\x00\x00\x00\x00").unwrap();
    let err = load_image(&tiff).unwrap_err();
    assert!(
        matches!(err, LoadImageError::UnsupportedFormat { .. }),
        "{err:?}"
    );
    assert!(err.to_string().to_lowercase().contains("tiff"), "{err}");

    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(pattern(32, 32))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let truncated = dir.path().join("cut.png");
    fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    let err = load_image(&truncated).unwrap_err();
    assert!(matches!(err, LoadImageError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("cut.png"), "{err}");
}
