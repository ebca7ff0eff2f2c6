//! Learning rate: linear warm-up from 0, then a cosine decay to `min_lr` at `total_steps`.

/// Warm-up + cosine schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// The learning rate of (0-based) step `step`.
    pub fn at(&self, step: u64) -> f64 {
        if self.warmup_steps > 0 && step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps.min(step)) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_lr + (self.peak_lr - self.min_lr) * cosine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let s = LrSchedule {
            peak_lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert!((s.at(0) - 1e-4).abs() < 1e-12);
        assert!((s.at(9) - 1e-3).abs() < 1e-12);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        // Half-way through the decay: the mean of peak and floor.
        assert!((s.at(60) - (1e-3 + 1e-5) / 2.0).abs() < 1e-12);
        assert!((s.at(110) - 1e-5).abs() < 1e-12);
        assert!((s.at(10_000) - 1e-5).abs() < 1e-12);
        for step in 10..110 {
            assert!(s.at(step + 1) <= s.at(step));
        }
    }
}
