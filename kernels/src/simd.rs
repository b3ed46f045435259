//! The instruction set a kernel runs with, chosen when it is called.
//!
//! kiln is built for baseline x86-64, so the compiler vectorises the kernels' loops with SSE2,
//! four floats wide, even on a CPU with AVX-512. [`multiversion!`] compiles a kernel twice more,
//! for AVX2 with FMA and for AVX-512, and each call runs the widest one the CPU has (std detects
//! it once and caches it). Every version computes the same floats bit for bit: the compiler
//! fuses no multiply and add into an FMA unless told to, and keeps the order of every sum.
//!
//! `KILN_KERNELS_SIMD=baseline` (or `avx2`) caps the choice, to measure what the wider versions
//! give or to test the narrower ones on a wide CPU.

use std::sync::OnceLock;

/// An instruction set the kernels are compiled for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// What the build targets: SSE2 on x86-64, anything on other architectures.
    Baseline,
    /// AVX2 with FMA, 8 floats a register.
    Avx2,
    /// AVX-512 (F, BW, DQ, VL), 16 floats a register.
    Avx512,
}

impl Level {
    /// The widest level this CPU runs.
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
            {
                return Self::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }

    /// The level kernels run at: the detected one, capped by `KILN_KERNELS_SIMD` when it names
    /// a narrower one. Read once.
    pub fn current() -> Self {
        #[cfg(test)]
        if let Some(level) = tests::OVERRIDE.get() {
            return level;
        }
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let cap = std::env::var("KILN_KERNELS_SIMD").ok().and_then(|name| Self::named(&name));
            cap.map_or(Self::detected(), |cap| cap.min(Self::detected()))
        })
    }

    /// The level's name, as `KILN_KERNELS_SIMD` takes it and `kiln bench` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// The level called `name` (`baseline`, `avx2`, `avx512`), in any case.
    pub fn named(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        [Self::Baseline, Self::Avx2, Self::Avx512].into_iter().find(|level| level.name() == name)
    }
}

/// Defines a kernel function compiled for each [`Level`], which runs the version for
/// [`Level::current`]. The function may not be generic: its body is compiled three times over,
/// inlined into one function per level with that level's target features.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            match $crate::simd::Level::current() {
                // SAFETY: `Level::current` never exceeds what the CPU was detected to run.
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Level::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Level::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}

pub(crate) use multiversion;

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::Level;
    use crate::{
        as_unwritten, gru_backward, gru_forward, lstm_backward, lstm_step, rnn_backward, rnn_forward,
    };

    thread_local! {
        /// The level kernels called on this thread run at, in place of the detected one.
        pub(crate) static OVERRIDE: Cell<Option<Level>> = const { Cell::new(None) };
    }

    /// `f`, with the kernels it calls on this thread run at `level`.
    fn at<R>(level: Level, f: impl FnOnce() -> R) -> R {
        OVERRIDE.set(Some(level));
        let result = f();
        OVERRIDE.set(None);
        result
    }

    /// `n` values in (−scale, scale), not a multiple of any vector's width in count.
    fn values(n: usize, scale: f32, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.613).sin() * scale).collect()
    }

    /// Every cell kernel's outputs at `level`, one after another.
    fn cell_outputs(level: Level) -> Vec<f32> {
        let (rows, hidden) = (5, 37);
        let n = rows * hidden;
        let (h_prev, c_prev, dh, dc) =
            (values(n, 0.9, 1.0), values(n, 2.0, 2.0), values(n, 1.0, 3.0), values(n, 1.0, 4.0));
        let (pre, bias) = (values(4 * n, 6.0, 5.0), values(4 * hidden, 0.5, 6.0));
        let (xp, hp, bh) = (values(3 * n, 6.0, 7.0), values(3 * n, 6.0, 8.0), values(3 * hidden, 0.5, 9.0));
        at(level, || {
            let [h, c, acts, tanh_c] = lstm_step(&pre, &bias, &c_prev);
            let (mut d_pre, mut d_c_prev) = (vec![0.0; 4 * n], vec![0.0; n]);
            lstm_backward(&acts, &tanh_c, &c_prev, &dh, &dc, as_unwritten(&mut d_pre), &mut d_c_prev, hidden);
            let (mut gh, mut saved) = (vec![0.0; n], vec![0.0; 4 * n]);
            gru_forward(
                &xp,
                &hp,
                &bias[..3 * hidden],
                &bh,
                &h_prev,
                as_unwritten(&mut gh),
                as_unwritten(&mut saved),
            );
            let (mut d_xp, mut d_hp, mut d_h_prev) = (vec![0.0; 3 * n], vec![0.0; 3 * n], vec![0.0; n]);
            gru_backward(
                &saved,
                &h_prev,
                &dh,
                as_unwritten(&mut d_xp),
                as_unwritten(&mut d_hp),
                &mut d_h_prev,
                hidden,
            );
            let (mut rh, mut d) = (vec![0.0; n], vec![0.0; n]);
            rnn_forward(&xp[..n], &hp[..n], &bias[..hidden], as_unwritten(&mut rh));
            rnn_backward(&rh, &dh, as_unwritten(&mut d));
            [h, c, acts, tanh_c, d_pre, d_c_prev, gh, saved, d_xp, d_hp, d_h_prev, rh, d].concat()
        })
    }

    #[test]
    fn every_level_the_cpu_runs_computes_the_baseline_s_floats_bit_for_bit() {
        let baseline = cell_outputs(Level::Baseline);
        assert!(baseline.iter().all(|v| v.is_finite()) && baseline.iter().any(|&v| v != 0.0));
        for level in [Level::Avx2, Level::Avx512].into_iter().filter(|&l| l <= Level::detected()) {
            let wide = cell_outputs(level);
            let same = baseline.iter().zip(&wide).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same && wide.len() == baseline.len(), "{level:?} differs from the baseline");
        }
    }

    #[test]
    fn levels_are_named_and_capped_as_the_variable_says() {
        assert_eq!(Level::named(" AVX2 "), Some(Level::Avx2));
        assert_eq!(Level::named("baseline"), Some(Level::Baseline));
        assert_eq!(Level::named("avx512"), Some(Level::Avx512));
        assert_eq!(Level::named("sse9"), None);
        assert!(Level::current() <= Level::detected());
        assert_eq!(at(Level::Baseline, Level::current), Level::Baseline);
    }
}
