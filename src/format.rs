//! How numbers and sizes are written in every report and message: significant digits (the
//! report's number rule) and bytes in binary units.

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

/// 512 MiB, 3.2 KiB, 100 B.
pub fn human_bytes(n: u64) -> String {
    const KI: f64 = 1024.0;
    let x = n as f64;
    if x >= KI * KI * KI {
        format!("{:.1} GiB", x / (KI * KI * KI))
    } else if x >= KI * KI {
        format!("{:.1} MiB", x / (KI * KI))
    } else if x >= KI {
        format!("{:.1} KiB", x / KI)
    } else {
        format!("{n} B")
    }
}
