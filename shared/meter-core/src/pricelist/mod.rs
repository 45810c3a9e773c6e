//! Price sync: AWS Price List offers in, a price table and a report out.
//!
//! Pure: no network, no clock, no file system. The CLI (`bedrock-meter
//! prices sync`) reads or downloads the offer files and hands their text to
//! [`offer::parse_file`]; [`sync`] does the rest, so a Lambda can call it
//! the same way.
//!
//! 1. Rows are named by `servicename` (Marketplace offer), `model`, or their
//!    usage-type stem, and mapped to model ids by the checked-in map
//!    ([`map::PriceMap`]); names without an entry are reported, never guessed.
//! 2. Usage types are classified ([`classify`]); only on-demand standard
//!    token rates are taken, everything else is skipped by name.
//! 3. Units convert exactly: `1K tokens` × 1000, `1M tokens` (and `Units`
//!    described as per million in the Marketplace offer) × 1; a rate that
//!    would need more than six decimals per 1M tokens is an error.
//! 4. The result is merged into the base table append-only: unchanged rates
//!    add nothing; a changed or new rate adds an entry whose `from` is the
//!    offer's publication day (or `--from`), so older records keep their
//!    price; manual entries and comments are kept verbatim.
//!
//! Errors in the data (unknown unit, two standard rates for one key, too
//! many decimals, an unclassified usage type of a mapped model, a map entry
//! that matches nothing, long-context rates without a threshold) are
//! collected in the report and no table is produced.

pub mod classify;
pub mod map;
pub mod offer;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::Date;

use crate::money::{parse_scaled, AmountError, RatePerMillion};
use crate::pricing::{LongContext, Meta, PriceTable, PriceTableError, Rates};
use crate::resolve::Route;
use classify::{classify, kebab_stem, Tier, TokenClass, Usage};
use map::{NameKey, NameKind, PriceMap};
use offer::{OfferFile, PriceRow, MARKETPLACE_OFFER};

/// Errors that stop a sync before it can report (unreadable inputs).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{file}: {reason}")]
    Offer { file: String, reason: String },
    #[error("price map {file}: {reason}")]
    Map { file: String, reason: String },
    #[error("base price table: {0}")]
    Base(#[from] PriceTableError),
}

/// Options of one sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// `from` of new entries instead of each offer's publication day.
    pub from: Option<Date>,
    /// Only rows of these Regions (empty: all).
    pub regions: Vec<String>,
}

/// What a sync found and did. Serialises to the `--json` report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    pub offers: Vec<OfferSeen>,
    pub changed: Vec<Change>,
    pub new_models: Vec<String>,
    pub unmapped: Vec<Unmapped>,
    pub errors: Vec<DataError>,
    /// Base-table models mapped to an offer that was read but with no rows.
    pub not_in_price_list: Vec<String>,
    /// Base-table models with no map entry: kept as they are.
    pub manual: Vec<String>,
    /// Rows skipped by kind (batch, flex, provisioned, ...).
    pub skipped: BTreeMap<String, usize>,
    pub checked_before: String,
    pub checked_after: String,
    /// New `[[rate]]` entries written.
    pub entries_added: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct OfferSeen {
    pub offer: String,
    pub version: String,
    pub published: String,
    pub regions: Vec<String>,
}

/// One rate that changed or appeared.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub model: String,
    pub route: String,
    /// `*` for the default entry.
    pub region: String,
    pub field: String,
    pub old: Option<String>,
    pub new: String,
    pub from: String,
}

/// A priced name with no map entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unmapped {
    pub offer: String,
    pub kind: NameKind,
    pub name: String,
    pub regions: Vec<String>,
}

/// A problem in the data; any of these means no table is produced.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataError {
    pub kind: &'static str,
    pub message: String,
}

/// The result: the new table text (when there were no data errors) and the
/// report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub table: Option<String>,
    pub report: SyncReport,
}

impl SyncOutcome {
    /// 2 on data errors, 1 when the table differs from the base, else 0.
    pub fn exit_code(&self, base: &str) -> u8 {
        match &self.table {
            None => 2,
            Some(t) if t != base => 1,
            Some(_) => 0,
        }
    }
}

/// One collected standard rate, with where it came from.
#[derive(Debug, Clone)]
struct Collected {
    rate: RatePerMillion,
    usd: String,
    unit: String,
    sku: String,
    source: String,
    published: Date,
}

type RateKey = (String, String, Route, bool, TokenClass);

/// (long context?, class, the collected rate) of one (model, route, Region).
type ClassRate<'a> = (bool, TokenClass, &'a Collected);

fn day_str(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The name a row is known by.
fn name_of(row: &PriceRow) -> Option<NameKey> {
    if row.offer == MARKETPLACE_OFFER {
        return row
            .servicename
            .clone()
            .map(|s| (row.offer.clone(), NameKind::Servicename, s));
    }
    if let Some(m) = &row.model {
        return Some((row.offer.clone(), NameKind::Model, m.clone()));
    }
    kebab_stem(&row.usagetype).map(|s| (row.offer.clone(), NameKind::Stem, s.to_string()))
}

/// The published price converted exactly to USD per 1M tokens.
fn per_million(row: &PriceRow) -> Result<RatePerMillion, DataError> {
    let err = |kind: &'static str, message: String| DataError { kind, message };
    let per_1k = match row.unit.as_str() {
        "1K tokens" => true,
        "1M tokens" => false,
        "Units"
            if row.offer == MARKETPLACE_OFFER
                && row.description.to_ascii_lowercase().contains("million") =>
        {
            false
        }
        other => {
            return Err(err(
                "unknown_unit",
                format!(
                    "{} {} ({}): unit `{other}` is not a token unit bedrock-meter knows (1K tokens, 1M tokens, or Units described as per million)",
                    row.sku, row.usagetype, row.source
                ),
            ))
        }
    };
    // USD per 1K with nine decimals is exactly USD per 1M with six: the
    // conversion is a shift of the decimal point, and parse_scaled refuses
    // any digit that would be lost.
    let scale = if per_1k {
        RatePerMillion::SCALE + 3
    } else {
        RatePerMillion::SCALE
    };
    let micros = parse_scaled(&row.usd, scale).map_err(|e| match e {
        AmountError::TooPrecise { .. } => err(
            "too_precise",
            format!(
                "{} {} ({}): {} per {} needs more than six decimals per 1M tokens; the table keeps rates exact",
                row.sku, row.usagetype, row.source, row.usd, row.unit
            ),
        ),
        other => err(
            "not_a_rate",
            format!("{} {} ({}): {other}", row.sku, row.usagetype, row.source),
        ),
    })?;
    // $1000 per 1M tokens is far above any published token rate: a larger
    // value means a unit slip, not a price.
    if micros > 1_000_000_000 {
        return Err(err(
            "implausible",
            format!(
                "{} {} ({}): {} per {} is more than $1000 per 1M tokens; check the unit",
                row.sku, row.usagetype, row.source, row.usd, row.unit
            ),
        ));
    }
    u64::try_from(micros)
        .map(RatePerMillion::from_micros)
        .map_err(|_| err("implausible", format!("{}: rate too large", row.sku)))
}

/// Syncs `files` into the table `base_text` using `map`.
pub fn sync(
    files: &[OfferFile],
    map: &PriceMap,
    base_text: &str,
    opts: &SyncOptions,
) -> Result<SyncOutcome, SyncError> {
    let base = PriceTable::from_toml(base_text)?;
    let mut report = SyncReport {
        checked_before: base.meta().checked.clone(),
        ..SyncReport::default()
    };
    let mut errors: BTreeSet<DataError> = BTreeSet::new();
    let mut offers_read: BTreeSet<String> = BTreeSet::new();
    let mut offer_versions: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    let mut matched: BTreeSet<NameKey> = BTreeSet::new();
    let mut unmapped: BTreeMap<NameKey, BTreeSet<String>> = BTreeMap::new();
    let mut collected: BTreeMap<RateKey, Collected> = BTreeMap::new();
    let mut latest_published: Option<Date> = None;
    let mut thresholds: BTreeMap<String, u64> = BTreeMap::new();
    let wanted = |region: &str| opts.regions.is_empty() || opts.regions.iter().any(|r| r == region);

    for file in files {
        let OfferFile::Offer {
            offer,
            version,
            published,
            rows,
        } = file
        else {
            continue;
        };
        offers_read.insert(offer.clone());
        latest_published = latest_published.max(Some(*published));
        let seen = offer_versions
            .entry((offer.clone(), version.clone(), day_str(*published)))
            .or_default();
        for row in rows {
            let Some(key) = name_of(row) else {
                if matches!(classify(&row.usagetype), Usage::Token(_)) && wanted(&row.region) {
                    let key = (row.offer.clone(), NameKind::Stem, row.usagetype.clone());
                    unmapped.entry(key).or_default().insert(row.region.clone());
                }
                continue;
            };
            let Some(entry) = map.entries.get(&key) else {
                if matches!(classify(&row.usagetype), Usage::Token(_)) && wanted(&row.region) {
                    unmapped.entry(key).or_default().insert(row.region.clone());
                }
                continue;
            };
            matched.insert(key.clone());
            if !wanted(&row.region) {
                continue;
            }
            seen.insert(row.region.clone());
            if entry.models.is_empty() {
                *report.skipped.entry("not_metered".into()).or_default() += 1;
                continue;
            }
            let usage = match classify(&row.usagetype) {
                Usage::NotToken(label) => {
                    *report.skipped.entry(label.into()).or_default() += 1;
                    continue;
                }
                Usage::Unknown => {
                    errors.insert(DataError {
                        kind: "unclassified",
                        message: format!(
                            "{} {} ({} `{}`, {}): usage type not understood; extend the classifier or map the name to no models",
                            row.sku, row.usagetype, key.1.label(), key.2, row.source
                        ),
                    });
                    continue;
                }
                Usage::Token(t) if t.tier != Tier::Standard => {
                    *report.skipped.entry(t.tier.label().into()).or_default() += 1;
                    continue;
                }
                Usage::Token(t) => t,
            };
            let feature = row.feature.as_deref().unwrap_or("").to_ascii_lowercase();
            if feature.contains("batch")
                || feature.contains("provisioned")
                || feature.contains("customization")
            {
                errors.insert(DataError {
                    kind: "disagreement",
                    message: format!(
                        "{} {} ({}): the usage type reads as on-demand standard but `feature` is `{}`",
                        row.sku,
                        row.usagetype,
                        row.source,
                        row.feature.as_deref().unwrap_or("")
                    ),
                });
                continue;
            }
            if row.dimensions != 1 {
                errors.insert(DataError {
                    kind: "tiered",
                    message: format!(
                        "{} {} ({}): {} price dimensions (tiered pricing) for one token rate",
                        row.sku, row.usagetype, row.source, row.dimensions
                    ),
                });
                continue;
            }
            if row.region.is_empty() {
                errors.insert(DataError {
                    kind: "unclassified",
                    message: format!(
                        "{} {} ({}): no regionCode",
                        row.sku, row.usagetype, row.source
                    ),
                });
                continue;
            }
            let rate = match per_million(row) {
                Ok(r) => r,
                Err(e) => {
                    errors.insert(e);
                    continue;
                }
            };
            for model in &entry.models {
                if let Some(t) = entry.long_context_threshold {
                    thresholds.insert(model.clone(), t);
                }
                let rk: RateKey = (
                    model.clone(),
                    row.region.clone(),
                    usage.route,
                    usage.long_context,
                    usage.class,
                );
                let this = Collected {
                    rate,
                    usd: row.usd.clone(),
                    unit: row.unit.clone(),
                    sku: row.sku.clone(),
                    source: row.source.clone(),
                    published: row.published,
                };
                match collected.get_mut(&rk) {
                    None => {
                        collected.insert(rk, this);
                    }
                    Some(prev) if prev.rate == rate => {
                        prev.published = prev.published.max(row.published);
                    }
                    Some(prev) => {
                        let (a, b) = if (&prev.sku, &prev.source) <= (&this.sku, &this.source) {
                            (&*prev, &this)
                        } else {
                            (&this, &*prev)
                        };
                        errors.insert(DataError {
                            kind: "ambiguous",
                            message: format!(
                                "{model} {} {} {}{}: two standard rates, {} per {} ({} in {}) and {} per {} ({} in {})",
                                rk.1,
                                rk.2,
                                if rk.3 { "long-context " } else { "" },
                                usage.class.field(false),
                                a.usd, a.unit, a.sku, a.source,
                                b.usd, b.unit, b.sku, b.source
                            ),
                        });
                    }
                }
            }
        }
    }
    for ((offer, version, published), regions) in offer_versions {
        report.offers.push(OfferSeen {
            offer,
            version,
            published,
            regions: regions.into_iter().collect(),
        });
    }
    for (key, entry) in &map.entries {
        if offers_read.contains(&key.0) && !matched.contains(key) {
            errors.insert(DataError {
                kind: "stale_map",
                message: format!(
                    "map entry {} `{}` ({}) matches no row of the offers read; remove it or fix the name (models keep their table rates)",
                    key.1.label(),
                    key.2,
                    key.0
                ),
            });
        }
        let _ = entry;
    }
    report.unmapped = unmapped
        .into_iter()
        .map(|((offer, kind, name), regions)| Unmapped {
            offer,
            kind,
            name,
            regions: regions.into_iter().collect(),
        })
        .collect();

    // Rates per (model, route, region).
    type Group = (Rates, Date);
    let mut groups: BTreeMap<(String, Route), BTreeMap<String, Group>> = BTreeMap::new();
    {
        let mut per_key: BTreeMap<(String, Route, String), Vec<ClassRate>> = BTreeMap::new();
        for ((model, region, route, long, class), c) in &collected {
            per_key
                .entry((model.clone(), *route, region.clone()))
                .or_default()
                .push((*long, *class, c));
        }
        for ((model, route, region), items) in per_key {
            let get = |long: bool, class: TokenClass| {
                items
                    .iter()
                    .find(|(l, c, _)| *l == long && *c == class)
                    .map(|(_, _, c)| c.rate)
            };
            let published = items.iter().map(|(_, _, c)| c.published).max();
            let Some(published) = published else { continue };
            let mut rates = Rates {
                input: get(false, TokenClass::Input),
                output: get(false, TokenClass::Output),
                cache_read: get(false, TokenClass::CacheRead),
                cache_write: get(false, TokenClass::CacheWrite),
                cache_write_1h: get(false, TokenClass::CacheWrite1h),
                long_context: None,
            };
            let has_long = items.iter().any(|(l, _, _)| *l);
            let same_as_standard = TokenClass::ALL
                .iter()
                .all(|&c| get(true, c).is_none() || get(true, c) == get(false, c));
            if has_long && !same_as_standard {
                match thresholds.get(&model) {
                    Some(&threshold) => {
                        rates.long_context = Some(LongContext {
                            threshold,
                            input: get(true, TokenClass::Input),
                            output: get(true, TokenClass::Output),
                            cache_read: get(true, TokenClass::CacheRead),
                            cache_write: get(true, TokenClass::CacheWrite),
                            cache_write_1h: get(true, TokenClass::CacheWrite1h),
                        });
                    }
                    None => {
                        errors.insert(DataError {
                            kind: "long_context",
                            message: format!(
                                "{model} {route} {region}: the Price List has long-context rates but the map gives no `long_context_threshold` for it"
                            ),
                        });
                        continue;
                    }
                }
            }
            if rates.input.is_none() && rates.output.is_none() {
                errors.insert(DataError {
                    kind: "incomplete",
                    message: format!(
                        "{model} {route} {region}: cache rates but neither an input nor an output rate"
                    ),
                });
                continue;
            }
            groups
                .entry((model, route))
                .or_default()
                .insert(region, (rates, published));
        }
    }

    // Merge, append-only.
    struct NewEntry {
        model: String,
        route: Route,
        region: Option<String>,
        from: Date,
        rates: Rates,
    }
    let mut added: Vec<NewEntry> = Vec::new();
    let mut synced_models: BTreeSet<String> = BTreeSet::new();
    for ((model, route), regions) in &groups {
        synced_models.insert(model.clone());
        if !base.has_model(model) && !report.new_models.contains(model) {
            report.new_models.push(model.clone());
        }
        // (region, in-force entry is region-specific, from, merged, old)
        let mut changed: Vec<(String, bool, Date, Rates, Option<Rates>)> = Vec::new();
        let mut fallback_regions = 0usize;
        for (region, (synced, published)) in regions {
            let from = opts.from.unwrap_or(*published);
            let in_force = base.entry_in_force(model, *route, region, from);
            let specific = in_force.is_some_and(|e| e.region.is_some());
            if !specific {
                fallback_regions += 1;
            }
            let old = in_force.map(|e| e.rates);
            let merged = overlay(synced, old.as_ref());
            if old == Some(merged) {
                continue;
            }
            if let Some(e) = in_force {
                if e.from >= from {
                    errors.insert(DataError {
                        kind: "not_newer",
                        message: format!(
                            "{model} {route} {region}: the offer (published {}) is not newer than the table's entry from {}; pass --from to date the new rates",
                            day_str(*published),
                            day_str(e.from)
                        ),
                    });
                    continue;
                }
            }
            changed.push((region.clone(), specific, from, merged, old));
        }
        let fallback: Vec<&(String, bool, Date, Rates, Option<Rates>)> =
            changed.iter().filter(|c| !c.1).collect();
        let collapse = !fallback.is_empty()
            && fallback.len() == fallback_regions
            && fallback
                .iter()
                .all(|c| c.2 == fallback[0].2 && c.3 == fallback[0].3 && c.4 == fallback[0].4);
        for (i, (region, specific, from, merged, old)) in changed.iter().enumerate() {
            let as_default = collapse && !specific;
            if as_default && changed.iter().position(|c| !c.1) != Some(i) {
                continue; // one default entry for all of them
            }
            let region_label = if as_default {
                "*".to_string()
            } else {
                region.clone()
            };
            for (field, new, was) in rate_fields(merged, old.as_ref()) {
                if Some(&new) != was.as_ref() {
                    report.changed.push(Change {
                        model: model.clone(),
                        route: route.to_string(),
                        region: region_label.clone(),
                        field: field.to_string(),
                        old: was,
                        new,
                        from: day_str(*from),
                    });
                }
            }
            added.push(NewEntry {
                model: model.clone(),
                route: *route,
                region: (!as_default).then(|| region.clone()),
                from: *from,
                rates: *merged,
            });
        }
    }
    let mut mapped_models: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, entry) in &map.entries {
        for m in &entry.models {
            mapped_models.insert(m, &key.0);
        }
    }
    let base_models: BTreeSet<&str> = base.entries().iter().map(|e| e.model.as_str()).collect();
    for m in base_models {
        match mapped_models.get(m) {
            None => report.manual.push(m.to_string()),
            Some(offer) if offers_read.contains(*offer) && !synced_models.contains(m) => {
                report.not_in_price_list.push(m.to_string())
            }
            Some(_) => {}
        }
    }
    report.errors = errors.into_iter().collect();
    report.changed.sort();
    report.entries_added = added.len();

    // The new checked day: the latest publication day read, never earlier
    // than the base's.
    let mut meta = base.meta().clone();
    if let Some(p) = latest_published {
        let p = day_str(p);
        if p > meta.checked {
            meta.checked = p;
        }
    }
    report.checked_after = meta.checked.clone();
    if !report.errors.is_empty() {
        return Ok(SyncOutcome {
            table: None,
            report,
        });
    }
    let meta_changed = meta.checked != base.meta().checked || !added.is_empty();
    let mut text = base_text.to_string();
    if meta_changed {
        if !added.is_empty() {
            meta.version = meta.checked.clone();
        }
        let line = sources_line(&report.offers);
        meta.sources.retain(|s| !s.starts_with(SOURCES_PREFIX));
        meta.sources.push(line);
        text = replace_meta(&text, &render_meta(&meta));
    }
    if !added.is_empty() {
        added.sort_by(|a, b| {
            (&a.model, a.route, &a.region, a.from).cmp(&(&b.model, b.route, &b.region, b.from))
        });
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "\n# --- prices sync, {} ---\n",
            report
                .offers
                .iter()
                .map(|o| format!("{}@{}", o.offer, o.version))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for e in &added {
            text.push('\n');
            text.push_str(&render_entry(
                &e.model,
                e.region.as_deref(),
                e.route,
                e.from,
                &e.rates,
            ));
        }
    }
    if let Err(e) = PriceTable::from_toml(&text) {
        report.errors.push(DataError {
            kind: "invalid_table",
            message: format!("the synced table does not validate: {e}"),
        });
        return Ok(SyncOutcome {
            table: None,
            report,
        });
    }
    Ok(SyncOutcome {
        table: Some(text),
        report,
    })
}

const SOURCES_PREFIX: &str = "AWS Price List via `bedrock-meter prices sync`: ";

fn sources_line(offers: &[OfferSeen]) -> String {
    let parts: BTreeSet<String> = offers
        .iter()
        .map(|o| format!("{}@{} ({})", o.offer, o.version, o.published))
        .collect();
    format!(
        "{SOURCES_PREFIX}{}",
        parts.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// The synced classes over the base entry's: classes the Price List does
/// not publish (a manual 1-hour rate, say) are carried forward.
fn overlay(synced: &Rates, base: Option<&Rates>) -> Rates {
    let Some(b) = base else { return *synced };
    Rates {
        input: synced.input.or(b.input),
        output: synced.output.or(b.output),
        cache_read: synced.cache_read.or(b.cache_read),
        cache_write: synced.cache_write.or(b.cache_write),
        cache_write_1h: synced.cache_write_1h.or(b.cache_write_1h),
        long_context: synced.long_context.or(b.long_context),
    }
}

/// (field, value) pairs of an entry, as the table writes them.
fn fields(r: &Rates) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut put = |name: &'static str, v: Option<RatePerMillion>| {
        if let Some(v) = v {
            out.push((name, v.to_string()));
        }
    };
    put("input", r.input);
    put("output", r.output);
    put("cache_read", r.cache_read);
    put("cache_write", r.cache_write);
    put("cache_write_1h", r.cache_write_1h);
    if let Some(lc) = &r.long_context {
        out.push(("long_context_threshold", lc.threshold.to_string()));
        for (name, v) in [
            ("long_input", lc.input),
            ("long_output", lc.output),
            ("long_cache_read", lc.cache_read),
            ("long_cache_write", lc.cache_write),
            ("long_cache_write_1h", lc.cache_write_1h),
        ] {
            if let Some(v) = v {
                out.push((name, v.to_string()));
            }
        }
    }
    out
}

/// Per-field (field, new, old) of a change.
fn rate_fields(new: &Rates, old: Option<&Rates>) -> Vec<(&'static str, String, Option<String>)> {
    let old_fields: BTreeMap<&str, String> =
        old.map(fields).unwrap_or_default().into_iter().collect();
    fields(new)
        .into_iter()
        .map(|(f, v)| (f, v, old_fields.get(f).cloned()))
        .collect()
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_entry(model: &str, region: Option<&str>, route: Route, from: Date, r: &Rates) -> String {
    let mut s = String::from("[[rate]]\n");
    s.push_str(&format!("model = {}\n", toml_str(model)));
    if let Some(g) = region {
        s.push_str(&format!("region = {}\n", toml_str(g)));
    }
    if route == Route::Global {
        s.push_str("route = \"global\"\n");
    }
    s.push_str(&format!("from = \"{}\"\n", day_str(from)));
    for (name, v) in fields(r) {
        if name == "long_context_threshold" {
            s.push_str(&format!("{name} = {v}\n"));
        } else {
            s.push_str(&format!("{name} = \"{v}\"\n"));
        }
    }
    s
}

fn render_meta(m: &Meta) -> String {
    let list = |items: &[String]| {
        let mut s = String::from("[\n");
        for i in items {
            s.push_str(&format!("  {},\n", toml_str(i)));
        }
        s.push(']');
        s
    };
    let mut s = String::from("[meta]\n");
    s.push_str(&format!("version = {}\n", toml_str(&m.version)));
    s.push_str(&format!("checked = {}\n", toml_str(&m.checked)));
    s.push_str(&format!("currency = {}\n", toml_str(&m.currency)));
    s.push_str(&format!("sources = {}\n", list(&m.sources)));
    if !m.notes.is_empty() {
        s.push_str(&format!("notes = {}\n", list(&m.notes)));
    }
    s
}

/// Replaces the `[meta]` table of `text` (from its header to the last
/// non-comment line before the next table) with `meta`; everything else is
/// kept byte for byte.
fn replace_meta(text: &str, meta: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let Some(start) = lines.iter().position(|l| l.trim() == "[meta]") else {
        return format!("{meta}\n{text}");
    };
    let next = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |p| start + 1 + p);
    let mut end = next;
    while end > start + 1 {
        let t = lines[end - 1].trim();
        if t.is_empty() || t.starts_with('#') {
            end -= 1;
        } else {
            break;
        }
    }
    let mut out = String::new();
    out.extend(lines[..start].iter().copied());
    out.push_str(meta);
    out.extend(lines[end..].iter().copied());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(unit: &str, usd: &str, offer: &str, description: &str) -> PriceRow {
        PriceRow {
            offer: offer.into(),
            source: "test".into(),
            version: "1".into(),
            published: Date::from_calendar_date(2026, time::Month::May, 4).unwrap(),
            sku: "SKU".into(),
            region: "us-east-1".into(),
            usagetype: "USE1-X-input-tokens".into(),
            servicename: None,
            model: None,
            feature: None,
            unit: unit.into(),
            usd: usd.into(),
            description: description.into(),
            dimensions: 1,
        }
    }

    #[test]
    fn units_convert_to_per_million_exactly_or_not_at_all() {
        let ok = [
            ("1K tokens", "0.0000350000", "AmazonBedrock", "", 35_000),
            ("1K tokens", "0.0000087500", "AmazonBedrock", "", 8_750),
            ("1K tokens", "0.0000000000", "AmazonBedrock", "", 0),
            ("1K tokens", "0.000000001", "AmazonBedrock", "", 1),
            (
                "1M tokens",
                "3.3000000000",
                MARKETPLACE_OFFER,
                "",
                3_300_000,
            ),
            (
                "Units",
                "6.6000000000",
                MARKETPLACE_OFFER,
                "Million 1 hour Cache Write Input Tokens",
                6_600_000,
            ),
        ];
        for (unit, usd, offer, desc, micros) in ok {
            assert_eq!(
                per_million(&row(unit, usd, offer, desc)),
                Ok(RatePerMillion::from_micros(micros)),
                "{usd} per {unit}"
            );
        }
        let bad = [
            (
                "1K tokens",
                "0.0000000001",
                "AmazonBedrock",
                "",
                "too_precise",
            ),
            (
                "1M tokens",
                "0.3300000001",
                MARKETPLACE_OFFER,
                "",
                "too_precise",
            ),
            (
                "Units",
                "3.3",
                "AmazonBedrock",
                "Million Input Tokens",
                "unknown_unit",
            ),
            (
                "Units",
                "0.198",
                MARKETPLACE_OFFER,
                "Per Hour per 1K Input TPM",
                "unknown_unit",
            ),
            ("hour", "55.00", "AmazonBedrock", "", "unknown_unit"),
            ("1K tokens", "3.00", "AmazonBedrock", "", "implausible"),
            ("1K tokens", "1e-5", "AmazonBedrock", "", "not_a_rate"),
        ];
        for (unit, usd, offer, desc, kind) in bad {
            assert_eq!(
                per_million(&row(unit, usd, offer, desc)).unwrap_err().kind,
                kind,
                "{usd} per {unit}"
            );
        }
    }

    #[test]
    fn the_meta_block_is_replaced_and_everything_else_kept() {
        let text = "# head\n\n[meta]\nversion = \"a\"\nsources = [\n  \"x\",\n]\n\n# about aliases\n[aliases]\n\"k\" = \"v\"\n";
        let out = replace_meta(text, "[meta]\nversion = \"b\"\n");
        assert_eq!(
            out,
            "# head\n\n[meta]\nversion = \"b\"\n\n# about aliases\n[aliases]\n\"k\" = \"v\"\n"
        );
    }

    #[test]
    fn the_built_in_map_parses_and_names_only_known_offers() {
        let map = PriceMap::builtin().unwrap();
        assert!(map.entries.len() >= 10);
        for (key, entry) in &map.entries {
            assert!(offer::OFFER_CODES.contains(&key.0.as_str()));
            assert!(!entry.models.is_empty(), "{key:?}");
        }
    }

    #[test]
    fn a_map_entry_naming_a_servicename_outside_the_marketplace_offer_is_refused() {
        let err = PriceMap::from_toml(
            "m",
            "[[model]]\noffer = \"AmazonBedrock\"\nservicename = \"Nova Micro\"\nmodels = [\"x\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("servicename"), "{err}");
    }
}
