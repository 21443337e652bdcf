//! Prices (SPEC 4, 5.2, 10): the bound every price and increment keeps, reading a stored price
//! the shell may have typed in any form, and the frontend's pricing rule in checked integer
//! arithmetic, so that no menu, however absurd, makes a total wrap.

use rusqlite::types::ValueRef;

/// Prices and price increments are whole NOK within ±this (SPEC 10). A café's dearest item is
/// far below it, and 50 lines of items priced at it cannot overflow anything.
pub const MAX_NOK: i64 = 100_000;

/// Whether `nok` is a price or increment the café may charge.
pub fn in_bounds(nok: i64) -> bool {
    (-MAX_NOK..=MAX_NOK).contains(&nok)
}

/// A stored price as whole NOK: an integer, or a decimal (older files hold `40.0`, as REAL or
/// text: rounded, as the old backend's data allows). `None` for anything else (a BLOB, words,
/// a number beyond `i64`).
pub fn stored_nok(value: ValueRef<'_>) -> Option<i64> {
    let real = |f: f64| {
        let f = f.round();
        (f.is_finite() && f.abs() < 9.0e15).then_some(f as i64)
    };
    match value {
        ValueRef::Integer(i) => Some(i),
        ValueRef::Real(f) => real(f),
        ValueRef::Text(t) => {
            let s = std::str::from_utf8(t).ok()?.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(real))
        }
        ValueRef::Null | ValueRef::Blob(_) => None,
    }
}

/// A chosen customization value, as priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub increment_nok: i64,
    /// `true`: add the increment in NOK; `false`: multiply by `increment / 100`.
    pub constant_price: bool,
}

/// The frontend's price rule: `ceil((price + constant increments) × Π(increment / 100))`,
/// computed exactly in integers (floating point would charge 56 for 50 × 110 %). `None` when
/// the result does not fit in an `i64` (an absurd menu): the order is refused, never wrapped.
pub fn item_total(price_nok: i64, choices: &[Choice]) -> Option<i64> {
    let mut numerator: i128 = i128::from(price_nok);
    for c in choices.iter().filter(|c| c.constant_price) {
        numerator = numerator.checked_add(i128::from(c.increment_nok))?;
    }
    let mut denominator: i128 = 1;
    for c in choices.iter().filter(|c| !c.constant_price) {
        match (
            numerator.checked_mul(i128::from(c.increment_nok)),
            denominator.checked_mul(100),
        ) {
            (Some(n), Some(d)) => {
                // Keep the fraction small: most factors (100 %, 50 %) cancel out.
                let g = gcd(n, d);
                numerator = n / g;
                denominator = d / g;
            }
            // Dozens of odd percentages: floating point, still refused when out of range.
            _ => return float_total(price_nok, choices),
        }
    }
    let q = numerator.div_euclid(denominator);
    let total = if numerator.rem_euclid(denominator) == 0 {
        q
    } else {
        q + 1
    };
    i64::try_from(total).ok()
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    // `b` started as a positive denominator, so `a` is at least 1 and fits.
    i128::try_from(a.max(1)).unwrap_or(1)
}

fn float_total(price_nok: i64, choices: &[Choice]) -> Option<i64> {
    let mut add = price_nok as f64;
    let mut factor = 1.0;
    for c in choices {
        if c.constant_price {
            add += c.increment_nok as f64;
        } else {
            factor *= c.increment_nok as f64 / 100.0;
        }
    }
    let total = (add * factor).ceil();
    // 2^63 is exactly representable; anything at or past it does not fit.
    (total.is_finite() && total.abs() < 9.2e18).then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(n: i64) -> Choice {
        Choice {
            increment_nok: n,
            constant_price: true,
        }
    }

    fn times(percent: i64) -> Choice {
        Choice {
            increment_nok: percent,
            constant_price: false,
        }
    }

    #[test]
    fn plain_item_costs_its_price() {
        assert_eq!(item_total(45, &[]), Some(45));
    }

    #[test]
    fn constant_values_add_and_others_multiply_then_round_up() {
        assert_eq!(item_total(45, &[add(5)]), Some(50));
        assert_eq!(item_total(45, &[add(5), times(150)]), Some(75));
        assert_eq!(item_total(45, &[times(110)]), Some(50)); // 49.5 → 50
        assert_eq!(item_total(50, &[times(110)]), Some(55)); // exactly 55, not 56
        assert_eq!(item_total(40, &[times(50), times(50)]), Some(10));
    }

    #[test]
    fn many_factors_stay_exact_and_overflow_is_refused() {
        assert_eq!(item_total(45, &[times(100); 40]), Some(45));
        assert_eq!(item_total(i64::MAX, &[add(1)]), None);
        assert_eq!(item_total(MAX_NOK, &[times(MAX_NOK); 6]), None);
        assert_eq!(item_total(MAX_NOK, &[times(MAX_NOK); 60]), None);
        assert_eq!(item_total(-MAX_NOK, &[times(MAX_NOK); 60]), None);
    }

    #[test]
    fn stored_prices_are_read_in_every_form_the_shell_leaves() {
        assert_eq!(stored_nok(ValueRef::Integer(45)), Some(45));
        assert_eq!(stored_nok(ValueRef::Real(40.0)), Some(40));
        assert_eq!(stored_nok(ValueRef::Text(b" 45 ")), Some(45));
        assert_eq!(stored_nok(ValueRef::Text(b"39.5")), Some(40));
        assert_eq!(stored_nok(ValueRef::Text(b"gratis")), None);
        assert_eq!(stored_nok(ValueRef::Blob(b"45")), None);
        assert_eq!(stored_nok(ValueRef::Real(f64::NAN)), None);
        assert_eq!(stored_nok(ValueRef::Null), None);
    }
}
