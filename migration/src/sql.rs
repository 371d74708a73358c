use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Runs each statement for the connected backend, in order.
pub async fn run(
    manager: &SchemaManager<'_>,
    postgres: &[&str],
    sqlite: &[&str],
) -> Result<(), DbErr> {
    let statements = match manager.get_database_backend() {
        DbBackend::Postgres => postgres,
        DbBackend::Sqlite => sqlite,
        other => return Err(DbErr::Migration(format!("unsupported backend {other:?}"))),
    };
    for statement in statements {
        manager
            .get_connection()
            .execute_unprepared(statement)
            .await?;
    }
    Ok(())
}

/// What differs between the two backends in a statement written once. A
/// migration whose PostgreSQL and SQLite text would otherwise be twins that
/// differ only in type names builds each statement from one template with
/// [`run_each`], so a CHECK or an index cannot be fixed in one twin and
/// forgotten in the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// An exact integer: amounts are counts of their smallest unit.
    pub fn bigint(self) -> &'static str {
        match self {
            Dialect::Postgres => "bigint",
            Dialect::Sqlite => "INTEGER",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Dialect::Postgres => "text",
            Dialect::Sqlite => "TEXT",
        }
    }

    /// A point in time: `timestamptz`; RFC 3339 text on SQLite.
    pub fn timestamp(self) -> &'static str {
        match self {
            Dialect::Postgres => "timestamptz",
            Dialect::Sqlite => "TEXT",
        }
    }
}

/// A closed set of text values, for `CHECK (column IN ...)` on both backends.
pub fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|value| format!("'{value}'")).collect();
    format!("({})", quoted.join(","))
}

/// Runs the statements `template` writes for the connected backend.
pub async fn run_each(
    manager: &SchemaManager<'_>,
    template: impl Fn(Dialect) -> Vec<String>,
) -> Result<(), DbErr> {
    let dialect = match manager.get_database_backend() {
        DbBackend::Postgres => Dialect::Postgres,
        DbBackend::Sqlite => Dialect::Sqlite,
        other => return Err(DbErr::Migration(format!("unsupported backend {other:?}"))),
    };
    for statement in template(dialect) {
        manager
            .get_connection()
            .execute_unprepared(&statement)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template form of migration 000014's twins renders exactly the
    /// text that landed, on each backend.
    #[test]
    fn a_template_renders_each_backends_statement() {
        let template = |d: Dialect| {
            ["pending_claims", "pending_claims_micros"]
                .map(|column| {
                    format!(
                        "ALTER TABLE compliance_reports ADD COLUMN {column} {} NOT NULL DEFAULT 0 \
                         CHECK ({column} >= 0)",
                        d.bigint()
                    )
                })
                .to_vec()
        };
        assert_eq!(
            template(Dialect::Postgres),
            [
                "ALTER TABLE compliance_reports ADD COLUMN pending_claims bigint NOT NULL DEFAULT 0 CHECK (pending_claims >= 0)",
                "ALTER TABLE compliance_reports ADD COLUMN pending_claims_micros bigint NOT NULL DEFAULT 0 CHECK (pending_claims_micros >= 0)",
            ]
        );
        assert_eq!(
            template(Dialect::Sqlite),
            [
                "ALTER TABLE compliance_reports ADD COLUMN pending_claims INTEGER NOT NULL DEFAULT 0 CHECK (pending_claims >= 0)",
                "ALTER TABLE compliance_reports ADD COLUMN pending_claims_micros INTEGER NOT NULL DEFAULT 0 CHECK (pending_claims_micros >= 0)",
            ]
        );
    }

    #[test]
    fn one_of_quotes_each_value() {
        assert_eq!(one_of(&["open", "paid"]), "('open','paid')");
    }
}
