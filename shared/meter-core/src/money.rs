//! Exact money: integer pico-dollars, never floating point.
//!
//! Bedrock publishes rates in USD per 1M tokens. A rate with at most six
//! decimal places (0.00875 has five) is an integer number of micro-dollars per
//! 1M tokens, which is exactly that many pico-dollars (1e-12 USD) per token.
//! So the cost of `n` tokens is `n * rate_micros` pico-dollars: one integer
//! multiplication, no rounding anywhere. The price table refuses rates with
//! more than six decimals instead of rounding them.

use std::fmt;
use std::str::FromStr;

/// Decimal places carried by [`Usd`]: 1 unit = 1e-12 USD.
pub const USD_SCALE: u32 = 12;
const PICOS_PER_USD: u128 = 1_000_000_000_000;

/// A non-negative exact amount of US dollars, in pico-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u128);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    /// Builds an amount from pico-dollars (1e-12 USD).
    pub const fn from_picos(picos: u128) -> Self {
        Usd(picos)
    }

    /// The amount in pico-dollars.
    pub const fn picos(self) -> u128 {
        self.0
    }

    pub fn checked_add(self, other: Usd) -> Option<Usd> {
        self.0.checked_add(other.0).map(Usd)
    }

    /// Adds, saturating at `u128::MAX` pico-dollars (3.4e26 USD: unreachable by
    /// real spend; saturating keeps aggregation total and panic-free).
    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Usd {
    /// Plain decimal with trailing zeros trimmed: `0.00000875`, `12`, `3.3`.
    /// This is the exact value, suitable for a DynamoDB number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / PICOS_PER_USD;
        let frac = self.0 % PICOS_PER_USD;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:012}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Error parsing a decimal dollar amount or rate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("`{0}` is not a plain non-negative decimal number such as 3.30 or 0.00875")]
    NotDecimal(String),
    #[error("`{value}` has more than {max} decimal places; bedrock-meter keeps rates exact and will not round them")]
    TooPrecise { value: String, max: u32 },
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses a non-negative decimal string into an integer scaled by `10^scale`,
/// refusing (never rounding) values with more than `scale` decimal places.
pub fn parse_scaled(s: &str, scale: u32) -> Result<u128, AmountError> {
    let t = s.trim();
    let (int_part, frac_part) = match t.split_once('.') {
        Some((i, f)) => (i, f),
        None => (t, ""),
    };
    let is_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !is_digits(int_part)
        || !is_digits(frac_part)
    {
        return Err(AmountError::NotDecimal(s.to_string()));
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > scale as usize {
        return Err(AmountError::TooPrecise {
            value: s.to_string(),
            max: scale,
        });
    }
    let too_large = || AmountError::TooLarge(s.to_string());
    let mut value: u128 = 0;
    for b in int_part.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    value = value.checked_mul(10u128.pow(scale)).ok_or_else(too_large)?;
    let mut frac_value: u128 = 0;
    for b in frac_trimmed.bytes() {
        frac_value = frac_value * 10 + u128::from(b - b'0');
    }
    frac_value *= 10u128.pow(scale - frac_trimmed.len() as u32);
    value.checked_add(frac_value).ok_or_else(too_large)
}

impl FromStr for Usd {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_scaled(s, USD_SCALE).map(Usd)
    }
}

/// A rate in USD per 1M tokens, held as integer micro-dollars per 1M tokens
/// (equivalently pico-dollars per token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RatePerMillion(u64);

impl RatePerMillion {
    /// Decimal places a rate may have.
    pub const SCALE: u32 = 6;

    pub const fn from_micros(micros: u64) -> Self {
        RatePerMillion(micros)
    }

    /// Exact cost of `tokens` tokens at this rate. Cannot overflow:
    /// `u64::MAX * u64::MAX < u128::MAX`.
    pub fn cost(self, tokens: u64) -> Usd {
        Usd(u128::from(tokens) * u128::from(self.0))
    }
}

impl FromStr for RatePerMillion {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = parse_scaled(s, Self::SCALE)?;
        u64::try_from(v)
            .map(RatePerMillion)
            .map_err(|_| AmountError::TooLarge(s.to_string()))
    }
}

impl fmt::Display for RatePerMillion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // micro-dollars per 1M tokens == pico-dollars per token; reuse Usd's
        // formatting at scale 6 by scaling up to 12.
        write!(f, "{}", Usd(u128::from(self.0) * 1_000_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_micro_cache_read_rate_is_exact() {
        let rate: RatePerMillion = "0.00875".parse().unwrap();
        assert_eq!(rate, RatePerMillion::from_micros(8_750));
        // 1M tokens cost exactly the rate; 1 token costs 8750 pico-dollars.
        assert_eq!(rate.cost(1_000_000).to_string(), "0.00875");
        assert_eq!(rate.cost(1).to_string(), "0.00000000875");
    }

    #[test]
    fn amounts_print_as_plain_trimmed_decimals() {
        let cases = [
            ("0", "0"),
            ("12", "12"),
            ("3.30", "3.3"),
            ("0.000000000001", "0.000000000001"),
            ("1234567.5", "1234567.5"),
        ];
        for (input, printed) in cases {
            let usd: Usd = input.parse().unwrap();
            assert_eq!(usd.to_string(), printed, "{input}");
        }
    }

    #[test]
    fn rates_with_more_than_six_decimals_are_refused_not_rounded() {
        assert!(matches!(
            "0.0000001".parse::<RatePerMillion>(),
            Err(AmountError::TooPrecise { .. })
        ));
        // Trailing zeros beyond the scale are fine: the value is still exact.
        assert_eq!(
            "1.100000000".parse::<RatePerMillion>().unwrap(),
            RatePerMillion::from_micros(1_100_000)
        );
    }

    #[test]
    fn malformed_amounts_are_rejected() {
        for bad in ["", ".", "-1", "1e3", "1.2.3", "abc", " 1 2", "+1"] {
            assert!(bad.parse::<RatePerMillion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn largest_token_count_times_largest_rate_does_not_overflow() {
        let rate = RatePerMillion::from_micros(u64::MAX);
        let cost = rate.cost(u64::MAX);
        assert_eq!(cost.picos(), u128::from(u64::MAX) * u128::from(u64::MAX));
    }
}
