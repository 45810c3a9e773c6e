//! [`UsageReader`] on the usage table through meter-store (feature
//! `dynamodb`): each method is one access pattern, one paginated Query;
//! budgets are one Query of the `BUDGET` partition.

use meter_core::{Day, Month};
use meter_store::budgets::BudgetScope;
use meter_store::dynamo::{AccessPattern, StampedRow, UsageRow};
use meter_store::store::{describe_for_operator, Access};
use meter_store::{DynamoDbUsageStore, StoreError};

use crate::model::{BudgetLimits, BudgetOwner, Row};
use crate::reader::{ReadError, UsageReader};

/// A store failure as the views report it, in the operator's terms (what
/// failed and what to check: endpoint, credentials, Region, table), worded
/// once in meter-store for the CLI and the dashboard alike. No source: the
/// wording already carries the SDK's detail, and a chain would repeat it.
fn read_error(e: StoreError, store: &DynamoDbUsageStore) -> ReadError {
    ReadError {
        message: describe_for_operator(&e, &store.conn_info(), Access::Read),
        source: None,
    }
}

fn row(s: StampedRow) -> Row {
    let r = s.row;
    Row {
        kind: r.kind,
        user: r.user,
        model: r.model,
        day: r.day,
        month: r.month,
        tag: r.tag,
        value: r.value,
        invocations: r.invocations,
        errors: r.errors,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cache_read_input_tokens: r.cache_read_input_tokens,
        cache_write_input_tokens: r.cache_write_input_tokens,
        unpriced_invocations: r.unpriced_invocations,
        cost_usd: r.cost_usd,
        cost: r.cost,
        updated_at: s.updated_at,
    }
}

async fn read(store: &DynamoDbUsageStore, p: AccessPattern<'_>) -> Result<Vec<Row>, ReadError> {
    store
        .read_stamped(p)
        .await
        .map(|rows| rows.into_iter().map(row).collect())
        .map_err(|e| read_error(e, store))
}

/// Rows of meter-store's tag queries (one paginated Query each; they carry
/// no `updated_at`, so tag pages show no data-as-of stamp).
fn unstamped(
    store: &DynamoDbUsageStore,
    rows: Result<Vec<UsageRow>, StoreError>,
) -> Result<Vec<Row>, ReadError> {
    rows.map(|rows| {
        rows.into_iter()
            .map(|row| {
                self::row(StampedRow {
                    row,
                    updated_at: None,
                })
            })
            .collect()
    })
    .map_err(|e| read_error(e, store))
}

impl UsageReader for DynamoDbUsageStore {
    async fn users_on_day(&self, day: Day) -> Result<Vec<Row>, ReadError> {
        read(self, AccessPattern::UsersOnDay(day)).await
    }

    async fn models_on_day(&self, day: Day) -> Result<Vec<Row>, ReadError> {
        read(self, AccessPattern::ModelsOnDay(day)).await
    }

    async fn users_in_month(&self, month: Month) -> Result<Vec<Row>, ReadError> {
        read(self, AccessPattern::UsersInMonth(month)).await
    }

    async fn user_days(&self, user: &str, from: Day, to: Day) -> Result<Vec<Row>, ReadError> {
        read(self, AccessPattern::UserDays { user, from, to }).await
    }

    async fn user_month(&self, user: &str, month: Month) -> Result<Vec<Row>, ReadError> {
        read(self, AccessPattern::UserMonth { user, month }).await
    }

    async fn model_days(&self, model: &str, from: Day, to: Day) -> Result<Vec<Row>, ReadError> {
        read(self, AccessPattern::ModelDays { model, from, to }).await
    }

    async fn tag_values_in_month(&self, tag: &str, month: Month) -> Result<Vec<Row>, ReadError> {
        unstamped(self, self.tag_values_in_month(tag, month).await)
    }

    async fn tag_value_days(
        &self,
        tag: &str,
        value: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<Row>, ReadError> {
        unstamped(self, self.tag_value_days(tag, value, from, to).await)
    }

    async fn budgets(&self) -> Result<Vec<BudgetLimits>, ReadError> {
        let list = self.list_budgets().await.map_err(|e| read_error(e, self))?;
        Ok(list
            .into_iter()
            .filter_map(|b| {
                Some(BudgetLimits {
                    owner: match b.scope {
                        BudgetScope::Org => BudgetOwner::Org,
                        BudgetScope::Default => BudgetOwner::Default,
                        BudgetScope::User(u) => BudgetOwner::User(u),
                        // Tag value budgets are not on the dashboard's budget page yet.
                        BudgetScope::Tag { .. } => return None,
                    },
                    daily: b.daily,
                    monthly: b.monthly,
                    thresholds: b.thresholds.pcts().to_vec(),
                })
            })
            .collect())
    }
}
