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
    let [h, c, ..] = lstm_step(pre, bias, c_prev);
    (0..n).map(|j| f64::from(wh[j] * h[j] + wc[j] * c[j])).sum()
}

#[test]
fn the_lstm_step_matches_its_equations_and_its_gradient_matches_finite_differences() {
    let (batch, hidden) = (3, 5);
    let n = batch * hidden;
    let (pre, bias, c_prev) = (inputs(4 * n, 2.0, 0.0), inputs(4 * hidden, 0.5, 3.0), inputs(n, 1.0, 7.0));
    let (wh, wc) = (inputs(n, 1.0, 11.0), inputs(n, 1.0, 13.0));
    let [h, c, acts, t] = lstm_step(&pre, &bias, &c_prev);
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
    lstm_backward(&acts, &t, &c_prev, &wh, &wc, as_unwritten(&mut d_pre), &mut d_c_prev, hidden);
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
    gru_forward(xp, hp, bx, bh, h_prev, as_unwritten(&mut h), as_unwritten(&mut saved));
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
    gru_forward(&xp, &hp, &bx, &bh, &h_prev, as_unwritten(&mut h), as_unwritten(&mut saved));
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
    gru_backward(
        &saved,
        &h_prev,
        &w,
        as_unwritten(&mut d_xp),
        as_unwritten(&mut d_hp),
        &mut d_h_prev,
        hidden,
    );
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
    rnn_forward(&xp, &hp, &bias, as_unwritten(&mut h));
    assert!((0..12).all(|i| (h[i] - (xp[i] + hp[i] + bias[i % 4]).tanh()).abs() < 2e-7));
    let dh = inputs(12, 1.0, 3.0);
    let mut d = vec![0.0; 12];
    rnn_backward(&h, &dh, as_unwritten(&mut d));
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
            Cell::Rnn => rnn_forward(&xp[..batch * width], &hp, &bias, as_unwritten(&mut h1)),
            Cell::Gru => gru_forward(
                &xp[..batch * width],
                &hp,
                &bias,
                &hidden_bias,
                &h0,
                as_unwritten(&mut h1),
                as_unwritten(&mut vec![0.0; 4 * n]),
            ),
            Cell::Lstm => {
                let pre: Vec<f32> = hp.iter().zip(&xp).map(|(a, b)| a + b).collect();
                [h1, ..] = lstm_step(&pre, &bias, &c0);
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

/// A convolution computed straight from its definition, in f64: the output, and the gradients
/// of the input, weight and bias for the output gradient `dy`.
fn direct_conv(c: &conv::Conv, x: &[f32], w: &[f32], bias: &[f32], dy: &[f32]) -> [Vec<f64>; 4] {
    let ([oh, ow], [kh, kw]) = (c.out(), c.kernel);
    let mut out = vec![0.0; c.batch * c.c_out * oh * ow];
    let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    let mut db = vec![0.0; c.c_out];
    for b in 0..c.batch {
        for co in 0..c.c_out {
            for y in 0..oh {
                for z in 0..ow {
                    let at = ((b * c.c_out + co) * oh + y) * ow + z;
                    let mut sum = f64::from(bias[co]);
                    db[co] += f64::from(dy[at]);
                    for ci in 0..c.c_in {
                        for i in 0..kh {
                            for j in 0..kw {
                                let (r, q) = ((y * c.stride[0] + i) as isize, (z * c.stride[1] + j) as isize);
                                let (r, q) = (r - c.padding[0] as isize, q - c.padding[1] as isize);
                                if r < 0 || q < 0 || r >= c.h as isize || q >= c.w as isize {
                                    continue;
                                }
                                let xi = ((b * c.c_in + ci) * c.h + r as usize) * c.w + q as usize;
                                let wi = ((co * c.c_in + ci) * kh + i) * kw + j;
                                sum += f64::from(x[xi]) * f64::from(w[wi]);
                                dx[xi] += f64::from(w[wi]) * f64::from(dy[at]);
                                dw[wi] += f64::from(x[xi]) * f64::from(dy[at]);
                            }
                        }
                    }
                    out[at] = sum;
                }
            }
        }
    }
    [out, dx, dw, db]
}

fn assert_close(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() <= 1e-4 * (1.0 + w.abs()), "{name}[{i}]: {g} vs {w}");
    }
}

#[test]
fn the_convolution_and_its_gradients_match_the_definition() {
    let shape = |batch, c_in, side: [usize; 2], c_out, kernel, stride, padding| conv::Conv {
        batch,
        c_in,
        h: side[0],
        w: side[1],
        c_out,
        kernel,
        stride,
        padding,
    };
    for c in [
        // One sample per product, 3×3 "same", stride 1.
        shape(3, 2, [9, 8], 5, [3, 3], [1, 1], [1, 1]),
        // Few positions: several samples per product, a batch that does not divide evenly.
        shape(7, 3, [3, 3], 4, [3, 3], [1, 1], [1, 1]),
        // Strided, uneven kernel and padding, a 1×1 shortcut, a 7×7 stem.
        shape(2, 3, [7, 10], 2, [3, 2], [2, 3], [1, 0]),
        shape(5, 4, [6, 6], 3, [1, 1], [2, 2], [0, 0]),
        shape(2, 1, [12, 12], 3, [7, 7], [2, 2], [3, 3]),
        // Strided with 64 output positions or more: patches one sample at a time (fewer go
        // batch-wide: the cases above).
        shape(3, 3, [20, 18], 4, [3, 3], [2, 2], [1, 1]),
        // Stride 1, wide enough, 64 positions or more, 16 input channels or more: one product
        // per kernel offset (asserted below); uneven kernel and padding among them.
        shape(3, 16, [11, 12], 4, [3, 3], [1, 1], [1, 1]),
        shape(2, 16, [6, 13], 3, [3, 2], [1, 1], [1, 0]),
        shape(2, 17, [8, 10], 6, [1, 1], [1, 1], [0, 0]),
        shape(1, 16, [10, 16], 2, [5, 5], [1, 1], [2, 2]),
        // 3×3 "same" at stride 1 with 16 channels or more in and out: Winograd's F(2×2, 3×3),
        // odd sides (a last tile half outside) among them.
        shape(3, 16, [9, 8], 17, [3, 3], [1, 1], [1, 1]),
        shape(9, 20, [8, 8], 16, [3, 3], [1, 1], [1, 1]),
        // ... but not on maps under 6×6, such as ResNet-18's last, 3×3.
        shape(4, 16, [3, 3], 18, [3, 3], [1, 1], [1, 1]),
        // Under 64 positions with 64 output channels or more: the backward batch-wide, the
        // input channels (an odd count) split between the threads.
        shape(3, 5, [5, 4], 64, [3, 3], [1, 1], [1, 1]),
        shape(4, 7, [7, 7], 66, [3, 3], [2, 2], [1, 1]),
    ] {
        let [oh, ow] = c.out();
        let x = inputs(c.batch * c.c_in * c.h * c.w, 1.0, 1.0);
        let w = inputs(c.c_out * c.c_in * c.kernel[0] * c.kernel[1], 0.5, 2.0);
        let bias = inputs(c.c_out, 0.3, 3.0);
        let dy = inputs(c.batch * c.c_out * oh * ow, 1.0, 4.0);
        let (stride_1, wide) = (c.stride == [1, 1], oh * ow >= 64);
        assert_eq!(c.takes_shifted(), stride_1 && c.c_in >= 16 && wide, "{c:?}: the path meant for it");
        let winograd = c.kernel == [3, 3] && stride_1 && c.c_in.min(c.c_out) >= 16 && c.h.min(c.w) >= 6;
        assert_eq!(c.takes_winograd(), winograd, "{c:?}: Winograd");
        let [out, dx, dw, db] = direct_conv(&c, &x, &w, &bias, &dy);
        assert_close("forward", &conv::forward(&c, &x, &w, &bias), &out);
        let g = conv::backward(&c, &x, &w, &dy, true);
        assert_close("dx", g.x.as_deref().expect("asked for"), &dx);
        assert_close("dw", &g.weight, &dw);
        assert_close("db", &g.bias, &db);
        let without = conv::backward(&c, &x, &w, &dy, false);
        assert!(without.x.is_none());
        assert_eq!((without.weight, without.bias), (g.weight, g.bias), "{c:?}: the same without dx");
    }
}
