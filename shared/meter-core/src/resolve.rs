//! Attribution: who made a call, and on which model route.

use std::fmt;

use time::OffsetDateTime;

/// The user a record is attributed to when nothing identifies one.
pub const UNKNOWN_USER: &str = "unknown";

/// The resolved user and the principal that made the call, borrowed from the
/// record (nothing is allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribution<'a> {
    pub user: &'a str,
    /// The role (`arn:...:assumed-role/ROLE`) or the whole caller ARN.
    pub principal: Option<&'a str>,
}

/// Resolves the user: `requestMetadata[KEY]` when present and non-empty;
/// else the session name of an `assumed-role` ARN; else the name in an IAM
/// `user/` or `federated-user/` ARN; else the whole ARN; else `unknown`.
pub fn attribute<'a>(
    metadata_user: Option<&'a str>,
    identity_arn: Option<&'a str>,
) -> Attribution<'a> {
    let arn = identity_arn.filter(|a| !a.is_empty());
    let parsed = arn.map(parse_caller_arn);
    let principal = parsed.map(|p| p.principal);
    let user = match metadata_user.filter(|u| !u.trim().is_empty()) {
        Some(u) => u,
        None => match (parsed, arn) {
            (
                Some(CallerArn {
                    name: Some(name), ..
                }),
                _,
            ) => name,
            (_, Some(a)) => a,
            _ => UNKNOWN_USER,
        },
    };
    Attribution { user, principal }
}

/// The caller as the Cost and Usage Report (CUR 2.0) writes it in
/// `line_item_iam_principal`: `arn:PARTITION:iam::ACCOUNT:user/NAME` for an
/// IAM user (any path dropped), the whole
/// `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION` for a role session,
/// any other ARN unchanged. `None` without an ARN.
pub fn cur_principal(identity_arn: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let arn = identity_arn.filter(|a| !a.is_empty())?;
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("iam"), Some(_), Some(_), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Some(Cow::Borrowed(arn));
    };
    match resource.strip_prefix("user/") {
        Some(path_and_name) if path_and_name.contains('/') => {
            let name = path_and_name.rsplit('/').next().unwrap_or(path_and_name);
            if name.is_empty() {
                return Some(Cow::Borrowed(arn));
            }
            let prefix = &arn[..arn.len() - resource.len()];
            Some(Cow::Owned(format!("{prefix}user/{name}")))
        }
        _ => Some(Cow::Borrowed(arn)),
    }
}

#[derive(Clone, Copy)]
struct CallerArn<'a> {
    name: Option<&'a str>,
    principal: &'a str,
}

fn parse_caller_arn(arn: &str) -> CallerArn<'_> {
    // arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE
    let mut parts = arn.splitn(6, ':');
    let (
        Some("arn"),
        Some(_partition),
        Some(_service),
        Some(_region),
        Some(_account),
        Some(resource),
    ) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    )
    else {
        return CallerArn {
            name: None,
            principal: arn,
        };
    };
    let prefix_len = arn.len() - resource.len();
    if let Some(rest) = resource.strip_prefix("assumed-role/") {
        if let Some((role, session)) = rest.split_once('/') {
            if !session.is_empty() && !role.is_empty() {
                return CallerArn {
                    name: Some(session),
                    principal: &arn[..prefix_len + "assumed-role/".len() + role.len()],
                };
            }
        }
    }
    for kind in ["user/", "federated-user/"] {
        if let Some(path_and_name) = resource.strip_prefix(kind) {
            // IAM users may have a path: user/division/name.
            let name = path_and_name.rsplit('/').next().unwrap_or(path_and_name);
            if !name.is_empty() {
                return CallerArn {
                    name: Some(name),
                    principal: arn,
                };
            }
        }
    }
    CallerArn {
        name: None,
        principal: arn,
    }
}

/// How a call was routed, which decides its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// In-Region, or a geography cross-region profile (`us.`, `eu.`, ...).
    Regional,
    /// The `global.` cross-region profile.
    Global,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Route::Regional => "regional",
            Route::Global => "global",
        })
    }
}

/// Geography prefixes of system cross-region inference profiles.
pub const GEO_PREFIXES: &[&str] = &["us", "eu", "apac", "jp", "au", "us-gov", "ca"];

/// What a `modelId` refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef<'a> {
    /// A foundation model, possibly through a system inference profile.
    /// `id` is the id without ARN (`us.anthropic...`), `base` without the
    /// geography or `global.` prefix.
    Foundation {
        id: &'a str,
        base: &'a str,
        route: Route,
    },
    /// An application inference profile ARN: opaque, needs an alias.
    ApplicationProfile(&'a str),
    /// Provisioned throughput, custom or imported models: not priced per token.
    NotPerToken(&'a str),
}

/// Classifies a `modelId` as logged.
pub fn model_ref(model_id: &str) -> ModelRef<'_> {
    let id = if model_id.starts_with("arn:") {
        let resource = model_id.splitn(6, ':').nth(5).unwrap_or("");
        let (kind, rest) = resource.split_once('/').unwrap_or((resource, ""));
        match kind {
            "application-inference-profile" => return ModelRef::ApplicationProfile(model_id),
            "inference-profile" | "foundation-model" if !rest.is_empty() => rest,
            _ => return ModelRef::NotPerToken(model_id),
        }
    } else {
        model_id
    };
    if let Some((prefix, base)) = id.split_once('.') {
        if prefix == "global" && !base.is_empty() {
            return ModelRef::Foundation {
                id,
                base,
                route: Route::Global,
            };
        }
        if GEO_PREFIXES.contains(&prefix) && !base.is_empty() {
            return ModelRef::Foundation {
                id,
                base,
                route: Route::Regional,
            };
        }
    }
    ModelRef::Foundation {
        id,
        base: id,
        route: Route::Regional,
    }
}

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(time::Date);

impl Day {
    pub fn of(t: OffsetDateTime) -> Day {
        Day(t.to_offset(time::UtcOffset::UTC).date())
    }
    pub fn date(self) -> time::Date {
        self.0
    }
    pub fn month(self) -> Month {
        Month {
            year: self.0.year(),
            month: self.0.month() as u8,
        }
    }
    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Day> {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(s, &fmt).ok().map(Day)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            self.0.month() as u8,
            self.0.day()
        )
    }
}

/// A UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u8,
}

impl Month {
    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let year: i32 = y.parse().ok()?;
        let month: u8 = m.parse().ok()?;
        (1..=12).contains(&month).then_some(Month { year, month })
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_in_the_documented_order() {
        let role = "arn:aws:sts::111111111111:assumed-role/BedrockUsers/alice";
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (
                Some("bob@example.com"),
                Some(role),
                "bob@example.com",
                Some("arn:aws:sts::111111111111:assumed-role/BedrockUsers"),
            ),
            (
                Some(""),
                Some(role),
                "alice",
                Some("arn:aws:sts::111111111111:assumed-role/BedrockUsers"),
            ),
            (
                Some("  "),
                Some(role),
                "alice",
                Some("arn:aws:sts::111111111111:assumed-role/BedrockUsers"),
            ),
            (
                None,
                Some("arn:aws:iam::111111111111:user/carol"),
                "carol",
                Some("arn:aws:iam::111111111111:user/carol"),
            ),
            (
                None,
                Some("arn:aws:iam::111111111111:user/eng/team/dave"),
                "dave",
                Some("arn:aws:iam::111111111111:user/eng/team/dave"),
            ),
            (
                None,
                Some("arn:aws:sts::111111111111:federated-user/erin"),
                "erin",
                Some("arn:aws:sts::111111111111:federated-user/erin"),
            ),
            (
                None,
                Some("arn:aws-us-gov:sts::111111111111:assumed-role/R/s-1"),
                "s-1",
                Some("arn:aws-us-gov:sts::111111111111:assumed-role/R"),
            ),
            (
                None,
                Some("arn:aws:iam::111111111111:root"),
                "arn:aws:iam::111111111111:root",
                Some("arn:aws:iam::111111111111:root"),
            ),
            (None, Some("not-an-arn"), "not-an-arn", Some("not-an-arn")),
            (None, Some(""), UNKNOWN_USER, None),
            (None, None, UNKNOWN_USER, None),
        ];
        for (meta, arn, user, principal) in cases {
            let a = attribute(*meta, *arn);
            assert_eq!(a.user, *user, "{meta:?} {arn:?}");
            assert_eq!(a.principal, *principal, "{meta:?} {arn:?}");
        }
    }

    #[test]
    fn principals_take_the_form_the_cost_and_usage_report_writes() {
        let cases = [
            (
                Some("arn:aws:sts::111111111111:assumed-role/BedrockUsers/alice"),
                Some("arn:aws:sts::111111111111:assumed-role/BedrockUsers/alice"),
            ),
            (
                Some("arn:aws:iam::111111111111:user/eng/team/dave"),
                Some("arn:aws:iam::111111111111:user/dave"),
            ),
            (
                Some("arn:aws:iam::111111111111:user/carol"),
                Some("arn:aws:iam::111111111111:user/carol"),
            ),
            (Some("not-an-arn"), Some("not-an-arn")),
            (Some(""), None),
            (None, None),
        ];
        for (arn, want) in cases {
            assert_eq!(cur_principal(arn).as_deref(), want, "{arn:?}");
        }
    }

    #[test]
    fn model_ids_classify_by_route() {
        use ModelRef::*;
        let cases = [
            (
                "amazon.nova-micro-v1:0",
                Foundation {
                    id: "amazon.nova-micro-v1:0",
                    base: "amazon.nova-micro-v1:0",
                    route: Route::Regional,
                },
            ),
            (
                "us.anthropic.claude-sonnet-4-6",
                Foundation {
                    id: "us.anthropic.claude-sonnet-4-6",
                    base: "anthropic.claude-sonnet-4-6",
                    route: Route::Regional,
                },
            ),
            (
                "us-gov.anthropic.x",
                Foundation {
                    id: "us-gov.anthropic.x",
                    base: "anthropic.x",
                    route: Route::Regional,
                },
            ),
            (
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                Foundation {
                    id: "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                    base: "anthropic.claude-haiku-4-5-20251001-v1:0",
                    route: Route::Global,
                },
            ),
            (
                "arn:aws:bedrock:us-east-1:111111111111:inference-profile/eu.amazon.nova-lite-v1:0",
                Foundation {
                    id: "eu.amazon.nova-lite-v1:0",
                    base: "amazon.nova-lite-v1:0",
                    route: Route::Regional,
                },
            ),
            (
                "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0",
                Foundation {
                    id: "amazon.nova-pro-v1:0",
                    base: "amazon.nova-pro-v1:0",
                    route: Route::Regional,
                },
            ),
            (
                "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc",
                ApplicationProfile(
                    "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc",
                ),
            ),
            (
                "arn:aws:bedrock:us-east-1:111111111111:provisioned-model/xyz",
                NotPerToken("arn:aws:bedrock:us-east-1:111111111111:provisioned-model/xyz"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(model_ref(input), expected, "{input}");
        }
    }

    #[test]
    fn days_and_months_are_utc_and_print_iso() {
        let t = crate::record::parse_timestamp("2026-10-31T23:59:59-01:00").unwrap();
        let day = Day::of(t);
        assert_eq!(day.to_string(), "2026-11-01");
        assert_eq!(day.month().to_string(), "2026-11");
        assert_eq!(Day::parse("2026-11-01"), Some(day));
        assert_eq!(Month::parse("2026-11"), Some(day.month()));
        assert_eq!(Month::parse("2026-13"), None);
        assert_eq!(Day::parse("2026-02-30"), None);
    }
}
