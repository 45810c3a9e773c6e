//! Requests: a path and query string parsed once into a [`Request`], with
//! errors that say what to do.

use meter_core::{Day, Month};

use crate::format::percent_decode;

/// The output of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Csv,
    Json,
}

/// One page with its parameters, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// `/`: the organisation's month (to date).
    Overview { month: Month },
    /// `/users/{user}`: a user's days from `from` to `to`.
    User { user: String, from: Day, to: Day },
    /// `/models/{model}`: a model's days, and its users on `day`.
    Model {
        model: String,
        from: Day,
        to: Day,
        day: Option<Day>,
    },
    /// `/days/{day}`: every user that day and the organisation's total.
    Day { day: Day },
    /// `/budgets`: every budget against this UTC day and month.
    Budgets,
    /// `/tags/{key}`: every value of an attribution tag in a month.
    TagKey { key: String, month: Month },
    /// `/tags/{key}/{value}`: one tag value per model and day.
    TagValue {
        key: String,
        value: String,
        from: Day,
        to: Day,
    },
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub page: Page,
    pub format: Format,
    /// `?table=NAME`: only that table in CSV or JSON.
    pub table: Option<String>,
}

/// A request that names no page or has a bad parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no page at `{0}`: the pages are /, /users/USER, /models/MODEL, /days/YYYY-MM-DD, /budgets, /tags/KEY and /tags/KEY/VALUE")]
    NotFound(String),
    #[error("{0}")]
    BadParameter(String),
}

/// Longest date range a page reads (a year and a day).
pub const MAX_RANGE_DAYS: i64 = 366;

fn day_param(name: &str, v: &str) -> Result<Day, RequestError> {
    Day::parse(v).ok_or_else(|| {
        RequestError::BadParameter(format!(
            "`{name}` must be a UTC date like 2026-11-20, not `{v}`"
        ))
    })
}

fn month_param(v: &str) -> Result<Month, RequestError> {
    Month::parse(v).ok_or_else(|| {
        RequestError::BadParameter(format!(
            "`month` must be a UTC month like 2026-11, not `{v}`"
        ))
    })
}

/// The first and last day of a month.
pub fn month_bounds(m: Month) -> (Day, Day) {
    let month = time::Month::try_from(m.month).unwrap_or(time::Month::January);
    let first = time::Date::from_calendar_date(m.year, month, 1).unwrap_or(time::Date::MIN);
    let last = time::Date::from_calendar_date(m.year, month, month.length(m.year)).unwrap_or(first);
    (day_of(first), day_of(last))
}

/// A [`Day`] from a calendar date.
pub fn day_of(d: time::Date) -> Day {
    Day::of(d.midnight().assume_utc())
}

/// Every day from `from` to `to`, inclusive.
pub fn days(from: Day, to: Day) -> Vec<Day> {
    let mut out = Vec::new();
    let mut d = from.date();
    while d <= to.date() {
        out.push(day_of(d));
        match d.next_day() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

/// Parses a path (without the query) and a raw query string; `today` is
/// the current UTC day (the default period).
pub fn parse(path: &str, query: &str, today: Day) -> Result<Request, RequestError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k, true).unwrap_or_default();
        let v = percent_decode(v, true).ok_or_else(|| {
            RequestError::BadParameter(format!("the value of `{k}` is not valid UTF-8"))
        })?;
        params.push((k, v));
    }
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let format = match get("format") {
        None | Some("html") => Format::Html,
        Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some(other) => {
            return Err(RequestError::BadParameter(format!(
                "`format` must be html, csv or json, not `{other}`"
            )))
        }
    };
    let table = get("table").map(str::to_string);
    let month_or_current = || get("month").map(month_param).unwrap_or(Ok(today.month()));
    // A range: ?from=&to=, else ?month=, else this month to date.
    let range = || -> Result<(Day, Day), RequestError> {
        match (get("from"), get("to")) {
            (Some(f), Some(t)) => {
                let (f, t) = (day_param("from", f)?, day_param("to", t)?);
                if f > t {
                    return Err(RequestError::BadParameter(format!(
                        "`from` ({f}) is after `to` ({t}): swap them"
                    )));
                }
                if (t.date() - f.date()).whole_days() >= MAX_RANGE_DAYS {
                    return Err(RequestError::BadParameter(format!(
                        "the range {f} to {t} is longer than {MAX_RANGE_DAYS} days: choose a shorter one"
                    )));
                }
                Ok((f, t))
            }
            (Some(_), None) | (None, Some(_)) => Err(RequestError::BadParameter(
                "give both `from` and `to` (UTC dates like 2026-11-20), or `month`".into(),
            )),
            (None, None) => {
                let m = month_or_current()?;
                let (first, last) = month_bounds(m);
                Ok((first, if m == today.month() { today } else { last }))
            }
        }
    };
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let decode = |s: &str| {
        percent_decode(s, false).ok_or_else(|| {
            RequestError::BadParameter(format!("`{s}` is not a valid percent-encoded id"))
        })
    };
    let page = match segments.as_slice() {
        [] => Page::Overview {
            month: month_or_current()?,
        },
        ["users", u] if !u.is_empty() => {
            let (from, to) = range()?;
            Page::User {
                user: decode(u)?,
                from,
                to,
            }
        }
        ["models", m] if !m.is_empty() => {
            let (from, to) = range()?;
            Page::Model {
                model: decode(m)?,
                from,
                to,
                day: get("day").map(|d| day_param("day", d)).transpose()?,
            }
        }
        ["days", d] => Page::Day {
            day: day_param("day", &decode(d)?)?,
        },
        ["budgets"] => Page::Budgets,
        ["tags", k] if !k.is_empty() => Page::TagKey {
            key: decode(k)?,
            month: month_or_current()?,
        },
        ["tags", k, v] if !k.is_empty() && !v.is_empty() => {
            let (from, to) = range()?;
            Page::TagValue {
                key: decode(k)?,
                value: decode(v)?,
                from,
                to,
            }
        }
        _ => return Err(RequestError::NotFound(path.to_string())),
    };
    Ok(Request {
        page,
        format,
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Day {
        Day::parse("2026-11-20").unwrap()
    }

    #[test]
    fn the_overview_defaults_to_the_current_utc_month() {
        let r = parse("/", "", today()).unwrap();
        assert_eq!(
            r.page,
            Page::Overview {
                month: Month::parse("2026-11").unwrap()
            }
        );
        assert_eq!(r.format, Format::Html);
        let r = parse("/", "month=2026-10&format=csv", today()).unwrap();
        assert_eq!(
            r.page,
            Page::Overview {
                month: Month::parse("2026-10").unwrap()
            }
        );
        assert_eq!(r.format, Format::Csv);
    }

    #[test]
    fn a_user_id_with_markup_and_slashes_is_decoded_from_its_segment() {
        let r = parse("/users/%3Cimg%20src%3Dx%3E%2Fa", "", today()).unwrap();
        let Page::User { user, from, to } = r.page else {
            panic!("{r:?}")
        };
        assert_eq!(user, "<img src=x>/a");
        assert_eq!(from.to_string(), "2026-11-01");
        assert_eq!(to, today());
    }

    #[test]
    fn a_past_month_covers_every_day_of_it() {
        let r = parse("/models/m", "month=2024-02", today()).unwrap();
        let Page::Model { from, to, .. } = r.page else {
            panic!()
        };
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2024-02-01".into(), "2024-02-29".into())
        );
    }

    #[test]
    fn bad_parameters_say_what_to_give_instead() {
        let e = parse("/days/2026-13-01", "", today()).unwrap_err();
        assert!(e.to_string().contains("like 2026-11-20"), "{e}");
        let e = parse("/users/a", "from=2026-11-02&to=2026-11-01", today()).unwrap_err();
        assert!(e.to_string().contains("swap"), "{e}");
        let e = parse("/users/a", "from=2024-01-01&to=2026-11-01", today()).unwrap_err();
        assert!(e.to_string().contains("shorter"), "{e}");
        let e = parse("/", "format=xml", today()).unwrap_err();
        assert!(e.to_string().contains("html, csv or json"), "{e}");
        let e = parse("/nope", "", today()).unwrap_err();
        assert!(matches!(e, RequestError::NotFound(_)));
    }

    #[test]
    fn tag_pages_take_a_month_or_a_range_and_decode_markup_values() {
        let r = parse("/tags/feature", "month=2026-10", today()).unwrap();
        assert_eq!(
            r.page,
            Page::TagKey {
                key: "feature".into(),
                month: Month::parse("2026-10").unwrap()
            }
        );
        let r = parse(
            "/tags/feature/%3Cb%3Ex%3C%2Fb%3E",
            "from=2026-11-02&to=2026-11-05",
            today(),
        )
        .unwrap();
        let Page::TagValue {
            key,
            value,
            from,
            to,
        } = r.page
        else {
            panic!("{r:?}")
        };
        assert_eq!((key.as_str(), value.as_str()), ("feature", "<b>x</b>"));
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2026-11-02".into(), "2026-11-05".into())
        );
        let e = parse("/tags/feature", "month=2026-13", today()).unwrap_err();
        assert!(e.to_string().contains("like 2026-11"), "{e}");
    }

    #[test]
    fn days_spans_month_and_year_ends() {
        let d = days(
            Day::parse("2026-12-30").unwrap(),
            Day::parse("2027-01-02").unwrap(),
        );
        let s: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(s, ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"]);
    }
}
