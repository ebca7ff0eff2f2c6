//! How PyTorch and NumPy compute the few sequences schedules are built from, reproduced so
//! our tables carry the same float values as the references' (a 1-ulp change of one beta
//! moves a diffusers sigma by up to 1e-5 after 1000 cumulative products).

/// `torch.linspace(start, end, n, dtype=torch.float32)` on an x86 CPU: the endpoints are
/// rounded to f32, `step = (end - start) / (n - 1)` in f32, and element `i` is
/// `start + step * i` for the first half and `end - step * (n - 1 - i)` for the second, each
/// one fused multiply-add (torch's AVX2 build contracts them; verified against torch 2.14).
pub fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f32;
            let half = n / 2;
            (0..n)
                .map(|i| {
                    if i < half {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((n - 1 - i) as f32, end)
                    }
                })
                .collect()
        }
    }
}

/// `torch.linspace(start, end, n, dtype=torch.float64)`, same scheme in double precision.
pub fn torch_linspace_f64(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f64;
            let half = n / 2;
            (0..n)
                .map(|i| {
                    if i < half {
                        step.mul_add(i as f64, start)
                    } else {
                        (-step).mul_add((n - 1 - i) as f64, end)
                    }
                })
                .collect()
        }
    }
}

/// `numpy.linspace(start, stop, n)` (float64): `i * step + start`, the last element exactly
/// `stop`.
pub fn numpy_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (n - 1) as f64;
            let mut values: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
            values[n - 1] = stop;
            values
        }
    }
}

/// `numpy.arange(start, stop, step)` (float64): `ceil((stop - start) / step)` elements,
/// element `i` = `start + i * delta` where `delta = (start + step) - start` (NumPy fills
/// from the first two values).
pub fn numpy_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let delta = (start + step) - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => start + step,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// `numpy.interp(x, [0, 1, ..., n-1], table)` for one point: clamps outside the table,
/// else `slope * (x - i) + table[i]`.
pub fn numpy_interp_unit_grid(x: f64, table: &[f64]) -> f64 {
    let last = table.len() - 1;
    if x <= 0.0 {
        return table[0];
    }
    if x >= last as f64 {
        return table[last];
    }
    let i = x.floor() as usize;
    let slope = table[i + 1] - table[i];
    slope * (x - i as f64) + table[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_linspace_ends_exactly_at_stop() {
        let v = numpy_linspace(0.0, 999.0, 20);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[19], 999.0);
        assert!((v[1] - 999.0 / 19.0).abs() < 1e-12);
    }

    #[test]
    fn numpy_arange_length_follows_ceil() {
        assert_eq!(numpy_arange(1000.0, 0.0, -50.0).len(), 20);
        let v = numpy_arange(1000.0, 0.0, -1000.0 / 3.0);
        assert_eq!(v.len(), 3);
        assert!((v[2] - 333.333_333_333_333_4).abs() < 1e-9);
    }

    #[test]
    fn torch_linspace_f32_hits_both_ends() {
        let v = torch_linspace_f32(0.1, 0.7, 1000);
        assert_eq!(v[0], 0.1f32);
        assert_eq!(v[999], 0.7f32);
        assert!(v.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn interp_is_exact_on_grid_points() {
        let table = [1.0, 2.0, 4.0];
        assert_eq!(numpy_interp_unit_grid(1.0, &table), 2.0);
        assert_eq!(numpy_interp_unit_grid(1.5, &table), 3.0);
        assert_eq!(numpy_interp_unit_grid(-1.0, &table), 1.0);
        assert_eq!(numpy_interp_unit_grid(9.0, &table), 4.0);
    }
}
