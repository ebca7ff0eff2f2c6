use candle_core::Device;
use kakusan_models::clip::{ClipTextConfig, Tokenizer};
use kakusan_models::unet::UNetConfig;
use kakusan_models::vae::{AutoencoderKL, VaeConfig};
use kakusan_train::tasks::*;
use kakusan_train::TrainTask;
use std::time::Instant;

struct Squares;
impl CaptionedImages for Squares {
    fn get(&self, i: u64) -> (image::RgbImage, String) {
        let mut img = image::RgbImage::from_pixel(64, 64, image::Rgb([0, 0, 200]));
        let o = (i % 30) as u32;
        for y in o..o + 20 {
            for x in o..o + 20 {
                img.put_pixel(x, y, image::Rgb([220, 20, 20]));
            }
        }
        (img, "a red square on a blue background".into())
    }
}

fn main() {
    let dev = Device::Cpu;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../training/kakusan-mini");
    let vcfg: VaeConfig = serde_json::from_str(&std::fs::read_to_string(root.join("vae_config.json")).unwrap()).unwrap();
    let ucfg: UNetConfig = serde_json::from_str(&std::fs::read_to_string(root.join("unet_config.json")).unwrap()).unwrap();
    let tcfg: ClipTextConfig = serde_json::from_str(&std::fs::read_to_string(root.join("text_encoder_config.json")).unwrap()).unwrap();
    let bs: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(32);
    let mut vt = VaeTask::new(&vcfg, VaeTaskConfig { batch_size: bs, ..Default::default() }, Box::new(Squares), &dev).unwrap();
    println!("vae params {}", vt.vars().parameter_count());
    for s in 0..3 {
        let t = Instant::now();
        let l = vt.loss(s).unwrap();
        let f = t.elapsed().as_secs_f64();
        let _g = l.backward().unwrap();
        println!("vae step {s}: fwd {f:.3}s total {:.3}s", t.elapsed().as_secs_f64());
    }
    let vae = vt.vae.clone();
    let _ = AutoencoderKL::clone;
    let tok = Tokenizer::from_folder(root.join("../../tests/fixtures/tokenizer")).unwrap();
    let ac: Vec<f64> = (0..1000).map(|i| 1.0 - i as f64 / 1000.0).collect();
    let mut dt = DiffusionTask::new(&tcfg, &ucfg, vae, tok, ac, DiffusionTaskConfig { batch_size: bs, ..Default::default() }, Box::new(Squares), &dev).unwrap();
    println!("unet+text params {}", dt.vars().parameter_count());
    for s in 0..3 {
        let t = Instant::now();
        let l = dt.loss(s).unwrap();
        let f = t.elapsed().as_secs_f64();
        let _g = l.backward().unwrap();
        println!("unet step {s}: fwd {f:.3}s total {:.3}s", t.elapsed().as_secs_f64());
    }
}
