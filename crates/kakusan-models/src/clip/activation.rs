//! The MLP activations a CLIP text encoder may use.

use candle_core::{Result, Tensor};

use super::config::ClipActivation;

impl ClipActivation {
    /// Applies the activation element-wise.
    pub(crate) fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            // torch: x * sigmoid(1.702 * x)
            ClipActivation::QuickGelu => x.mul(&candle_nn::ops::sigmoid(&(x * 1.702)?)?),
            ClipActivation::Gelu => x.gelu_erf(),
            ClipActivation::GeluTanh => x.gelu(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn known_values() {
        let x = Tensor::new(&[-1f32, 0., 0.5, 2.], &Device::Cpu).unwrap();
        let quick = ClipActivation::QuickGelu
            .apply(&x)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let exact = ClipActivation::Gelu
            .apply(&x)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        // erf-GELU reference values (x * Phi(x)) computed in f64.
        let gelu = [
            -0.158_655_253_931_457_05,
            0.0,
            0.345_731_230_637_006_56,
            1.954_499_736_103_642,
        ];
        for (i, v) in [-1f64, 0., 0.5, 2.].into_iter().enumerate() {
            assert!((f64::from(quick[i]) - v * sig(1.702 * v)).abs() < 1e-6);
            assert!((f64::from(exact[i]) - gelu[i]).abs() < 1e-6, "{exact:?}");
        }
    }
}
