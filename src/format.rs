//! Numbers in every report and message (docs/report.md, "Errors and outputs"): how they are
//! written — significant digits for results (`significant`), a value's own digits for what the
//! user gave (`number`), both plainly from 0.001 up to where the digits run out and in
//! scientific notation outside — bytes in binary units, and which values an f32 parameter can
//! hold (`f32_parameter`).

use crate::error::{Error, Result};

/// `v` with `digits` significant digits: plainly from 0.001 up to where the digits run out
/// ("0.754", "2.29", "812.3", "567072" with 6 or more), in scientific notation outside
/// ("5.67e5", "3.10e-13"); "0", "inf", "NaN" as such.
pub fn significant(v: f64, digits: usize) -> String {
    let digits = digits.max(1);
    if !v.is_finite() || v == 0.0 {
        return if v == 0.0 { "0".into() } else { format!("{v}") };
    }
    let magnitude = v.abs().log10().floor() as i32;
    if (-3..digits as i32).contains(&magnitude) {
        let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.*e}", digits - 1)
    }
}

/// A value as it was given (a flag's number, a setting echoed in a message or a title): its
/// shortest digits that read back as the same f64, by the rule of `significant` with at least
/// four digits' room: "0.95", "1000", "12345.6" plainly, "1e-50", "1e308", "2.5e4" in
/// scientific notation; "0", "inf", "NaN" as such. Never hundreds of digits.
pub fn number(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return significant(v, 1);
    }
    // `{:e}` gives the shortest round-trip mantissa: "9.5e-1", "1e308", "1.23456e4".
    let sci = format!("{v:e}");
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let digits = mantissa.chars().filter(char::is_ascii_digit).count() as i32;
    if (-3..digits.max(4)).contains(&exponent) { format!("{v}") } else { sci }
}

/// The smallest and largest magnitudes an f32 parameter may have: the smallest normal f32
/// (GPUs flush smaller ones to zero) and the largest finite one.
pub const F32_MIN: f64 = f32::MIN_POSITIVE as f64;
pub const F32_MAX: f64 = f32::MAX as f64;

/// Refuses (`Error::Invalid`, naming `field` and the limit) a nonzero value that an f32 cannot
/// hold: one that would round to zero (or to a subnormal, which the GPU flushes to zero) or
/// overflow to infinity. A learning rate of 1e-50 would otherwise be a silent no-op run.
pub fn f32_parameter(field: &str, v: f64) -> Result<()> {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() || (F32_MIN..=F32_MAX).contains(&a) {
        return Ok(());
    }
    let (what, limit) = if a < F32_MIN {
        ("is 0 in f32: the smallest normal f32 is about", significant(F32_MIN, 4))
    } else {
        ("overflows f32: the largest f32 is about", significant(F32_MAX, 4))
    };
    Err(Error::Invalid(format!("`{field}` {} {what} {limit}", number(v))))
}

/// 512 MiB, 3.2 KiB, 100 B; 4.4 TiB, 16.0 EiB (never thousands of GiB).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_value_keeps_its_digits_and_never_runs_long() {
        for (v, want) in [
            (0.95, "0.95"),
            (1e-3, "0.001"),
            (1e-4, "1e-4"),
            (1000.0, "1000"),
            (1e4, "1e4"),
            (12345.6, "12345.6"),
            (2.5e4, "2.5e4"),
            (1e308, "1e308"),
            (-1e-50, "-1e-50"),
            (0.0, "0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(number(v), want, "{v:e}");
        }
        assert!(number(f64::MAX).len() < 30, "{}", number(f64::MAX));
    }

    #[test]
    fn f32_parameters_that_vanish_or_overflow_are_refused() {
        for ok in [0.0, 1e-3, 1e30, F32_MIN, F32_MAX, -0.5] {
            assert!(f32_parameter("lr", ok).is_ok(), "{ok}");
        }
        let e = f32_parameter("lr", 1e-50).unwrap_err().to_string();
        assert!(e.ends_with("`lr` 1e-50 is 0 in f32: the smallest normal f32 is about 1.175e-38"), "{e}");
        let e = f32_parameter("clip", 1e39).unwrap_err().to_string();
        assert!(e.ends_with("`clip` 1e39 overflows f32: the largest f32 is about 3.403e38"), "{e}");
        assert!(f32_parameter("lr", 1e-40).is_err(), "a subnormal f32 is flushed to zero on GPUs");
    }

    #[test]
    fn bytes_in_binary_units() {
        for (n, want) in [
            (100, "100 B"),
            (3277, "3.2 KiB"),
            (512 << 20, "512.0 MiB"),
            (4470 << 30, "4.4 TiB"),
            (u64::MAX, "16.0 EiB"),
        ] {
            assert_eq!(human_bytes(n), want);
        }
    }
}
