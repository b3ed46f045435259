//! The kernels against plain libm arithmetic and against finite differences.

use super::*;

fn inputs(n: usize, scale: f32, seed: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 + seed) * 0.731).sin() * scale).collect()
}

#[test]
fn exp_sigmoid_and_tanh_match_libm() {
    for i in -20_000..=20_000 {
        let x = i as f32 * 0.004;
        let (want, got) = (x.exp(), exp(x));
        assert!((got - want).abs() <= 4.0 * f32::EPSILON * want, "exp({x}) = {got}, libm {want}");
        let want = 1.0 / (1.0 + (-x).exp());
        assert!((sigmoid(x) - want).abs() < 1e-6, "sigmoid({x})");
        assert!((tanh(x) - x.tanh()).abs() < 2e-7, "tanh({x}) = {} vs {}", tanh(x), x.tanh());
    }
    assert_eq!(exp(-1000.0), (-87.0f32).exp().max(exp(-87.0)));
    assert!(exp(1000.0).is_finite() && sigmoid(-1000.0) >= 0.0 && sigmoid(1000.0) == 1.0);
    assert_eq!(tanh(100.0), 1.0);
    assert_eq!(tanh(-100.0), -1.0);
}

#[test]
fn sigmoid_passes_agree_with_the_scalar_function_on_both_paths() {
    for n in [100, PARALLEL_FROM + 7] {
        let x = inputs(n, 8.0, 1.0);
        let mut y = vec![0.0; n];
        sigmoid_forward(&x, &mut y);
        assert!(x.iter().zip(&y).all(|(&x, &y)| y == sigmoid(x)));
        let dy = inputs(n, 1.0, 2.0);
        let mut dx = vec![0.0; n];
        sigmoid_backward(&y, &dy, &mut dx);
        assert!((0..n).all(|i| dx[i] == dy[i] * y[i] * (1.0 - y[i])));
    }
}

/// A scalar loss of the LSTM step's outputs, `Σ wh·h + Σ wc·c`, in f64 from the f32 kernel.
fn lstm_loss(pre: &[f32], bias: &[f32], c_prev: &[f32], wh: &[f32], wc: &[f32]) -> f64 {
    let n = c_prev.len();
    let (mut h, mut c, mut acts, mut t) = (vec![0.0; n], vec![0.0; n], vec![0.0; 4 * n], vec![0.0; n]);
    lstm_forward(pre, bias, c_prev, &mut h, &mut c, &mut acts, &mut t);
    (0..n).map(|j| f64::from(wh[j] * h[j] + wc[j] * c[j])).sum()
}

#[test]
fn the_lstm_step_matches_its_equations_and_its_gradient_matches_finite_differences() {
    let (batch, hidden) = (3, 5);
    let n = batch * hidden;
    let (pre, bias, c_prev) = (inputs(4 * n, 2.0, 0.0), inputs(4 * hidden, 0.5, 3.0), inputs(n, 1.0, 7.0));
    let (wh, wc) = (inputs(n, 1.0, 11.0), inputs(n, 1.0, 13.0));
    let (mut h, mut c, mut acts, mut t) = (vec![0.0; n], vec![0.0; n], vec![0.0; 4 * n], vec![0.0; n]);
    lstm_forward(&pre, &bias, &c_prev, &mut h, &mut c, &mut acts, &mut t);
    for b in 0..batch {
        for j in 0..hidden {
            let gate = |k: usize| pre[b * 4 * hidden + k * hidden + j] + bias[k * hidden + j];
            let s = |v: f32| 1.0 / (1.0 + (-v).exp());
            let cell = s(gate(1)) * c_prev[b * hidden + j] + s(gate(0)) * gate(2).tanh();
            assert!((c[b * hidden + j] - cell).abs() < 1e-6);
            assert!((h[b * hidden + j] - s(gate(3)) * cell.tanh()).abs() < 1e-6);
        }
    }
    let (mut d_pre, mut d_c_prev) = (vec![0.0; 4 * n], vec![0.0; n]);
    lstm_backward(&acts, &t, &c_prev, &wh, &wc, &mut d_pre, &mut d_c_prev, hidden);
    let eps = 1e-2;
    let numeric = |f: &dyn Fn(f32) -> f64| ((f(eps) - f(-eps)) / (2.0 * f64::from(eps))) as f32;
    for k in 0..4 * n {
        let d = numeric(&|e| {
            let mut p = pre.clone();
            p[k] += e;
            lstm_loss(&p, &bias, &c_prev, &wh, &wc)
        });
        assert!((d - d_pre[k]).abs() < 2e-3, "d pre[{k}]: {d} vs {}", d_pre[k]);
    }
    for k in 0..n {
        let d = numeric(&|e| {
            let mut cp = c_prev.clone();
            cp[k] += e;
            lstm_loss(&pre, &bias, &cp, &wh, &wc)
        });
        assert!((d - d_c_prev[k]).abs() < 2e-3, "d c_prev[{k}]");
    }
}

fn gru_loss(xp: &[f32], hp: &[f32], bx: &[f32], bh: &[f32], h_prev: &[f32], w: &[f32]) -> f64 {
    let n = h_prev.len();
    let (mut h, mut saved) = (vec![0.0; n], vec![0.0; 4 * n]);
    gru_forward(xp, hp, bx, bh, h_prev, &mut h, &mut saved);
    (0..n).map(|j| f64::from(w[j] * h[j])).sum()
}

#[test]
fn the_gru_step_matches_its_equations_and_its_gradient_matches_finite_differences() {
    let (batch, hidden) = (2, 4);
    let n = batch * hidden;
    let (xp, hp) = (inputs(3 * n, 2.0, 0.0), inputs(3 * n, 2.0, 5.0));
    let (bx, bh, h_prev, w) = (
        inputs(3 * hidden, 0.5, 1.0),
        inputs(3 * hidden, 0.5, 2.0),
        inputs(n, 1.0, 3.0),
        inputs(n, 1.0, 4.0),
    );
    let (mut h, mut saved) = (vec![0.0; n], vec![0.0; 4 * n]);
    gru_forward(&xp, &hp, &bx, &bh, &h_prev, &mut h, &mut saved);
    let s = |v: f32| 1.0 / (1.0 + (-v).exp());
    for b in 0..batch {
        for j in 0..hidden {
            let at = |k: usize| (b * 3 * hidden + k * hidden + j, k * hidden + j);
            let gate = |k: usize| {
                let (i, c) = at(k);
                (xp[i] + bx[c], hp[i] + bh[c])
            };
            let ((xz, hz), (xr, hr), (xn, hn)) = (gate(0), gate(1), gate(2));
            let (z, r) = (s(xz + hz), s(xr + hr));
            let want = (1.0 - z) * (xn + r * hn).tanh() + z * h_prev[b * hidden + j];
            assert!((h[b * hidden + j] - want).abs() < 1e-6);
        }
    }
    let (mut d_xp, mut d_hp, mut d_h_prev) = (vec![0.0; 3 * n], vec![0.0; 3 * n], vec![0.0; n]);
    gru_backward(&saved, &h_prev, &w, &mut d_xp, &mut d_hp, &mut d_h_prev, hidden);
    let eps = 1e-2;
    let numeric = |f: &dyn Fn(f32) -> f64| ((f(eps) - f(-eps)) / (2.0 * f64::from(eps))) as f32;
    for k in 0..3 * n {
        let dx = numeric(&|e| {
            let mut v = xp.clone();
            v[k] += e;
            gru_loss(&v, &hp, &bx, &bh, &h_prev, &w)
        });
        let dh = numeric(&|e| {
            let mut v = hp.clone();
            v[k] += e;
            gru_loss(&xp, &v, &bx, &bh, &h_prev, &w)
        });
        assert!(
            (dx - d_xp[k]).abs() < 2e-3 && (dh - d_hp[k]).abs() < 2e-3,
            "{k}: {dx} {} / {dh} {}",
            d_xp[k],
            d_hp[k]
        );
    }
    for k in 0..n {
        let d = numeric(&|e| {
            let mut v = h_prev.clone();
            v[k] += e;
            gru_loss(&xp, &hp, &bx, &bh, &v, &w)
        });
        assert!((d - d_h_prev[k]).abs() < 2e-3, "d h_prev[{k}]");
    }
}

#[test]
fn the_rnn_step_is_tanh_of_the_sum_and_its_gradient_is_one_minus_h_squared() {
    let (xp, hp, bias) = (inputs(12, 2.0, 0.0), inputs(12, 2.0, 1.0), inputs(4, 0.5, 2.0));
    let mut h = vec![0.0; 12];
    rnn_forward(&xp, &hp, &bias, &mut h);
    assert!((0..12).all(|i| (h[i] - (xp[i] + hp[i] + bias[i % 4]).tanh()).abs() < 2e-7));
    let dh = inputs(12, 1.0, 3.0);
    let mut d = vec![0.0; 12];
    rnn_backward(&h, &dh, &mut d);
    assert!((0..12).all(|i| d[i] == dh[i] * (1.0 - h[i] * h[i])));
}

/// A loss of a whole layer's outputs (and last cell state), in f64.
fn layer_loss(layer: &sequence::Layer<'_>, xp: &[f32], h0: &[f32], c0: &[f32], w: &[f32], wc: &[f32]) -> f64 {
    let run = sequence::forward(layer, xp, h0, c0);
    let outputs: f64 = run.outputs.iter().zip(w).map(|(&o, &w)| f64::from(o * w)).sum();
    let n = h0.len();
    let last_cell: f64 = if run.cells.is_empty() {
        0.0
    } else {
        run.cells[run.cells.len() - n..].iter().zip(wc).map(|(&c, &w)| f64::from(c * w)).sum()
    };
    outputs + last_cell
}

#[test]
fn a_whole_layer_runs_its_steps_and_its_gradients_match_finite_differences() {
    use sequence::{Cell, Layer};
    let (steps, batch, hidden) = (4, 2, 3);
    let n = batch * hidden;
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        let width = cell.gates() * hidden;
        let (xp, u) = (inputs(steps * batch * width, 1.5, 0.0), inputs(hidden * width, 0.8, 1.0));
        let (bias, hidden_bias) =
            (inputs(width, 0.3, 2.0), if cell == Cell::Gru { inputs(width, 0.3, 3.0) } else { Vec::new() });
        let (h0, c0) =
            (inputs(n, 0.5, 4.0), if cell == Cell::Lstm { inputs(n, 0.5, 5.0) } else { Vec::new() });
        let (w, wc) = (inputs(steps * n, 1.0, 6.0), inputs(n, 1.0, 7.0));
        let layer = |u: &[f32], bias: &[f32], hb: &[f32], f: &dyn Fn(&Layer<'_>) -> f64| {
            f(&Layer { cell, steps, batch, hidden, u, bias, hidden_bias: hb })
        };
        let base = Layer { cell, steps, batch, hidden, u: &u, bias: &bias, hidden_bias: &hidden_bias };
        // The first step is the cell's own step from h0.
        let run = sequence::forward(&base, &xp, &h0, &c0);
        let mut hp = vec![0.0f32; batch * width];
        for b in 0..batch {
            for j in 0..width {
                hp[b * width + j] = (0..hidden).map(|k| h0[b * hidden + k] * u[k * width + j]).sum();
            }
        }
        let mut h1 = vec![0.0; n];
        match cell {
            Cell::Rnn => rnn_forward(&xp[..batch * width], &hp, &bias, &mut h1),
            Cell::Gru => gru_forward(
                &xp[..batch * width],
                &hp,
                &bias,
                &hidden_bias,
                &h0,
                &mut h1,
                &mut vec![0.0; 4 * n],
            ),
            Cell::Lstm => {
                let pre: Vec<f32> = hp.iter().zip(&xp).map(|(a, b)| a + b).collect();
                let (mut c, mut acts, mut t) = (vec![0.0; n], vec![0.0; 4 * n], vec![0.0; n]);
                lstm_forward(&pre, &bias, &c0, &mut h1, &mut c, &mut acts, &mut t);
            }
        }
        assert!(h1.iter().zip(&run.outputs).all(|(a, b)| (a - b).abs() < 1e-5), "{cell:?}: step 1");

        let d_c_last = if cell == Cell::Lstm { wc.clone() } else { Vec::new() };
        let grads = sequence::backward(&base, &run, &h0, &w, &d_c_last);
        let eps = 1e-2;
        let numeric = |f: &dyn Fn(f32) -> f64| ((f(eps) - f(-eps)) / (2.0 * f64::from(eps))) as f32;
        let check = |name: &str, analytic: &[f32], f: &dyn Fn(usize, f32) -> f64| {
            for (i, &a) in analytic.iter().enumerate() {
                let d = numeric(&|e| f(i, e));
                assert!((d - a).abs() < 3e-3, "{cell:?} d {name}[{i}]: numeric {d}, analytic {a}");
            }
        };
        let bumped = |v: &[f32], i: usize, e: f32| {
            let mut v = v.to_vec();
            v[i] += e;
            v
        };
        let loss = |l: &Layer<'_>, xp: &[f32], h0: &[f32], c0: &[f32]| layer_loss(l, xp, h0, c0, &w, &wc);
        check("xp", &grads.xp, &|i, e| {
            layer(&u, &bias, &hidden_bias, &|l| loss(l, &bumped(&xp, i, e), &h0, &c0))
        });
        check("u", &grads.u, &|i, e| {
            layer(&bumped(&u, i, e), &bias, &hidden_bias, &|l| loss(l, &xp, &h0, &c0))
        });
        check("bias", &grads.bias, &|i, e| {
            layer(&u, &bumped(&bias, i, e), &hidden_bias, &|l| loss(l, &xp, &h0, &c0))
        });
        check("hidden_bias", &grads.hidden_bias, &|i, e| {
            layer(&u, &bias, &bumped(&hidden_bias, i, e), &|l| loss(l, &xp, &h0, &c0))
        });
        check("h0", &grads.h0, &|i, e| {
            layer(&u, &bias, &hidden_bias, &|l| loss(l, &xp, &bumped(&h0, i, e), &c0))
        });
        check("c0", &grads.c0, &|i, e| {
            layer(&u, &bias, &hidden_bias, &|l| loss(l, &xp, &h0, &bumped(&c0, i, e)))
        });
    }
}
