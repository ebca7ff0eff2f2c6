//! Gradients through the patched candle-core (vendor/README.md): a gradient sum starts from
//! its first contribution instead of zeros. Checked against gradients worked out by hand on
//! graphs where a tensor has one consumer, several, the same one twice, sums that the patch
//! starts from the first contribution mixed with the ones it leaves to upstream's zeros
//! (`sub`, `index_add`), and a
//! gradient that is a view into another one's storage (a concatenation's), through gradient
//! clipping and AdamW.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use kakusan_train::{clip_grad_norm, AdamW, AdamWConfig, NamedVars};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        // Sums of a few products of small integers: exact in f32 but for rounding in the
        // last place.
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn a_tensor_used_twice_by_one_op_gets_both_contributions() {
    // y = sum(x + x) => dy/dx = 2 everywhere.
    let x = Var::new(&[1f32, -2.0, 3.0], &Device::Cpu).unwrap();
    let y = (x.as_tensor() + x.as_tensor()).unwrap().sum_all().unwrap();
    let grads = y.backward().unwrap();
    assert_close(&values(grads.get(x.as_tensor()).unwrap()), &[2.0, 2.0, 2.0]);
}

#[test]
fn several_consumers_add_up_and_a_broadcast_contribution_is_not_kept_as_a_view() {
    // a = x * 3 (one consumer), b = x^2 (another), c = x (a third, through sum_all whose
    // gradient is a scalar broadcast to x's shape): y = sum(a) + sum(b) + sum(x)
    // => dy/dx = 3 + 2x + 1.
    let x = Var::new(&[[1f32, 2.0], [-1.0, 0.5]], &Device::Cpu).unwrap();
    let t = x.as_tensor();
    let y = ((t * 3.0).unwrap().sum_all().unwrap() + t.sqr().unwrap().sum_all().unwrap())
        .unwrap()
        .add(&t.sum_all().unwrap())
        .unwrap();
    let grads = y.backward().unwrap();
    let g = grads.get(t).unwrap();
    assert!(g.is_contiguous());
    assert_close(&values(g), &[6.0, 8.0, 2.0, 5.0]);

    // A lone broadcast gradient: sum(x) alone gives ones, contiguous and of x's shape.
    let grads = t.sum_all().unwrap().backward().unwrap();
    let g = grads.get(t).unwrap();
    assert_eq!(g.dims(), &[2, 2]);
    assert!(g.is_contiguous());
    assert_close(&values(g), &[1.0; 4]);
}

#[test]
fn linear_layer_with_a_transposed_weight_and_a_broadcast_bias() {
    // y = sum((x @ w^T + b) * m), x [2, 3], w [2, 3], b [2], m [2, 2] fixed.
    // dy/dw = m^T @ x, dy/db = column sums of m, dy/dx = m @ w.
    let dev = Device::Cpu;
    let x = Var::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &dev).unwrap();
    let w = Var::new(&[[1f32, 0.0, -1.0], [2.0, 1.0, 0.5]], &dev).unwrap();
    let b = Var::new(&[0.5f32, -0.5], &dev).unwrap();
    let m = Tensor::new(&[[1f32, 2.0], [3.0, -1.0]], &dev).unwrap();
    let out = x
        .as_tensor()
        .matmul(&w.as_tensor().t().unwrap())
        .unwrap()
        .broadcast_add(b.as_tensor())
        .unwrap();
    let y = (out * &m).unwrap().sum_all().unwrap();
    let grads = y.backward().unwrap();

    let gw = grads.get(w.as_tensor()).unwrap();
    assert!(
        gw.is_contiguous(),
        "a weight's gradient is contiguous for the optimiser"
    );
    // m^T @ x = [[1*1+3*4, 1*2+3*5, 1*3+3*6], [2*1-1*4, 2*2-1*5, 2*3-1*6]]
    assert_close(&values(gw), &[13.0, 17.0, 21.0, -2.0, -1.0, 0.0]);
    assert_close(&values(grads.get(b.as_tensor()).unwrap()), &[4.0, 1.0]);
    // m @ w = [[1*1+2*2, 1*0+2*1, 1*-1+2*0.5], [3*1-1*2, 3*0-1*1, 3*-1-1*0.5]]
    assert_close(
        &values(grads.get(x.as_tensor()).unwrap()),
        &[5.0, 2.0, 0.0, 1.0, -1.0, -3.5],
    );
}

#[test]
fn narrows_of_a_reused_intermediate() {
    // h = x * 2 feeds two narrows and a sum: y = sum(h[:, :2] * 3) + sum(h[:, 2:] ^ 2) + sum(h)
    // => dy/dh = 3 + 1 on the first two columns, 2h + 1 on the last; dy/dx = 2 dy/dh.
    let x = Var::new(&[[1f32, 2.0, 3.0], [-1.0, 0.0, 0.5]], &Device::Cpu).unwrap();
    let h = (x.as_tensor() * 2.0).unwrap();
    let left = (h.narrow(1, 0, 2).unwrap() * 3.0)
        .unwrap()
        .sum_all()
        .unwrap();
    let right = h.narrow(1, 2, 1).unwrap().sqr().unwrap().sum_all().unwrap();
    let y = ((left + right).unwrap() + h.sum_all().unwrap()).unwrap();
    let grads = y.backward().unwrap();
    // Last column: h = 6 and 1, so 2h + 1 = 13 and 3.
    assert_close(
        &values(grads.get(x.as_tensor()).unwrap()),
        &[8.0, 8.0, 26.0, 8.0, 8.0, 6.0],
    );
}

#[test]
fn the_same_graph_twice_gives_the_same_gradients() {
    // Each backward pass starts its own store: a second pass over a new graph of the same
    // shape must not see the first one's sums.
    let x = Var::new(&[0.5f32, 1.5], &Device::Cpu).unwrap();
    let run = || {
        let t = x.as_tensor();
        let y = (t.exp().unwrap() + t).unwrap().sum_all().unwrap();
        values(y.backward().unwrap().get(t).unwrap())
    };
    let first = run();
    assert_eq!(first, run());
    assert_close(&first, &[0.5f32.exp() + 1.0, 1.5f32.exp() + 1.0]);
}

#[test]
fn first_contribution_and_upstream_sums_on_one_tensor() {
    // index_select's gradient goes through index_add and `e^x - x`'s rhs through `sub`
    // (both start from real zeros, as upstream), `x * 3` and `e^x` through the patch's `accumulate`:
    // y = sum(x[[0, 0, 2]]) + sum(3x) + sum(e^x - x) => dy/dx = [2, 0, 1] + 3 + e^x - 1.
    let dev = Device::Cpu;
    let x = Var::new(&[0.5f32, -1.0, 2.0], &dev).unwrap();
    let t = x.as_tensor();
    let idx = Tensor::new(&[0u32, 0, 2], &dev).unwrap();
    let y = (t.index_select(&idx, 0).unwrap().sum_all().unwrap()
        + (t * 3.0).unwrap().sum_all().unwrap())
    .unwrap()
    .add(&(t.exp().unwrap() - t).unwrap().sum_all().unwrap())
    .unwrap();
    let grads = y.backward().unwrap();
    let want: Vec<f32> = [0.5f32, -1.0, 2.0]
        .iter()
        .zip([2.0f32, 0.0, 1.0])
        .map(|(x, n)| n + 3.0 + x.exp() - 1.0)
        .collect();
    assert_close(&values(grads.get(t).unwrap()), &want);
}

/// Parameters after one clipped AdamW step on `y = sum(cat([a, b], 0) * m)`, with the
/// gradients as backward left them (`copy_grads` false: b's is a view into the
/// concatenation's gradient, at an offset) or copied into fresh storage first.
fn step_on_concatenation(copy_grads: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>, usize) {
    let dev = Device::Cpu;
    let map = VarMap::new();
    let a = Var::new(&[[1f32, 2.0], [3.0, 4.0]], &dev).unwrap();
    let b = Var::new(&[[5f32, 6.0]], &dev).unwrap();
    {
        let mut data = map.data().lock().unwrap();
        data.insert("a".to_string(), a.clone());
        data.insert("b".to_string(), b.clone());
    }
    let vars = NamedVars::from_varmap(&map);
    let m = Tensor::new(&[[1f32, -2.0], [0.5, 3.0], [-1.5, 2.5]], &dev).unwrap();
    let both = Tensor::cat(&[a.as_tensor(), b.as_tensor()], 0).unwrap();
    let y = (both * &m).unwrap().sum_all().unwrap();
    let mut grads: GradStore = y.backward().unwrap();
    let gb = values(grads.get(b.as_tensor()).unwrap());
    let offset = grads
        .get(b.as_tensor())
        .unwrap()
        .storage_and_layout()
        .1
        .start_offset();
    if copy_grads {
        for var in [&a, &b] {
            let g = grads.remove(var.as_tensor()).unwrap();
            grads.insert(var.as_tensor(), g.copy().unwrap());
        }
    }
    // A norm of ~5.8 clipped to 1: the scale reaches every gradient.
    clip_grad_norm(&vars, &mut grads, 1.0).unwrap();
    let mut opt = AdamW::new(vars, AdamWConfig::default()).unwrap();
    opt.step(&grads, 0.1).unwrap();
    (values(a.as_tensor()), values(b.as_tensor()), gb, offset)
}

#[test]
fn a_gradient_that_views_another_steps_like_a_fresh_copy() {
    let (a_view, b_view, gb, offset) = step_on_concatenation(false);
    // b's gradient is m's last row, read in place after a's four values: the patched
    // backward kept the concatenation's gradient (upstream added it to fresh zeros).
    assert_close(&gb, &[-1.5, 2.5]);
    assert_eq!(offset, 4);
    let (a_copy, b_copy, _, _) = step_on_concatenation(true);
    assert_eq!(a_view, a_copy);
    assert_eq!(b_view, b_copy);
    // And the step moved them (against the gradient's sign).
    assert!(b_view[0] > 5.0 && b_view[1] < 6.0, "{b_view:?}");
}
