//! The `azora` command line: `serve` (the default), `migrate`, `keys`.

use anyhow::Context as _;
use chrono::{Duration, Utc};
use clap::{Args, Parser, Subcommand};
use migration::{Migrator, MigratorTrait};

use crate::auth::Role;
use crate::config::Settings;
use crate::identity::Identity;
use crate::startup::{Application, shutdown_signal};

#[derive(Parser, Debug)]
#[command(
    name = "azora",
    version,
    about = "The treasury of the AZR token economy, over gRPC."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gRPC server (the default). Applies pending migrations first.
    Serve {
        /// Do not apply pending migrations at start.
        #[arg(long, env = "AZORA_NO_MIGRATE")]
        no_migrate: bool,
    },
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the most recent migrations.
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List applied and pending migrations.
    Status,
    /// Drop every table and apply all migrations again. Destroys all data.
    Fresh {
        /// Confirm that all data may be destroyed.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create an API key and print its secret (once) on standard output.
    Create(CreateKey),
}

#[derive(Args, Debug)]
pub struct CreateKey {
    /// The user, by id or username.
    #[arg(
        long,
        required_unless_present = "bootstrap_admin",
        conflicts_with = "bootstrap_admin"
    )]
    pub user: Option<String>,
    /// The key's role: the user's own role, or `service`.
    #[arg(long, value_parser = parse_role, required_unless_present = "bootstrap_admin")]
    pub role: Option<Role>,
    /// A name to recognise the key by.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Days until the key expires; never when omitted.
    #[arg(long, value_name = "DAYS")]
    pub expires_in_days: Option<u32>,
    /// Create the first admin user and its key; refused once an admin exists.
    #[arg(long)]
    pub bootstrap_admin: bool,
    /// Username of the admin created by --bootstrap-admin.
    #[arg(long, default_value = "admin", requires = "bootstrap_admin")]
    pub username: String,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        let names: Vec<_> = Role::ALL.iter().map(|role| role.as_str()).collect();
        format!("must be one of {}", names.join(", "))
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { settings, command } = cli;
    match command.unwrap_or(Command::Serve { no_migrate: false }) {
        Command::Serve { no_migrate } => {
            let application = Application::build(settings, !no_migrate).await?;
            application.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate { action } => migrate(&settings, action).await,
        Command::Keys {
            action: KeysAction::Create(args),
        } => create_key(&settings, args).await,
    }
}

async fn migrate(settings: &Settings, action: MigrateAction) -> anyhow::Result<()> {
    let db = crate::db::connect(settings)
        .await
        .context("connecting to the database")?;
    match action {
        MigrateAction::Up => Migrator::up(&db, None).await?,
        MigrateAction::Down { steps } => Migrator::down(&db, Some(steps)).await?,
        MigrateAction::Status => Migrator::status(&db).await?,
        MigrateAction::Fresh { yes: true } => Migrator::fresh(&db).await?,
        MigrateAction::Fresh { yes: false } => {
            anyhow::bail!("`migrate fresh` destroys all data: pass --yes")
        }
    }
    Ok(())
}

/// Prints the new key's secret, once, on standard output.
async fn create_key(settings: &Settings, args: CreateKey) -> anyhow::Result<()> {
    let db = crate::db::connect(settings)
        .await
        .context("connecting to the database")?;
    Migrator::up(&db, None)
        .await
        .context("applying migrations")?;
    let identity = Identity::new(db);
    let expires_at = args
        .expires_in_days
        .map(|days| Utc::now() + Duration::days(i64::from(days)));
    let (username, issued) = if args.bootstrap_admin {
        let (user, issued) = identity.bootstrap_admin(&args.username, expires_at).await?;
        (user.username, issued)
    } else {
        let user = args.user.clone().unwrap_or_default();
        let role = args.role.context("--role is required")?;
        let issued = identity
            .issue_api_key_for(&user, args.name.clone(), role, expires_at)
            .await?;
        (user, issued)
    };
    eprintln!(
        "created API key {} for {username} with role {}; the secret below is shown only once",
        issued.key.id,
        issued.key.role.as_str()
    );
    println!("{}", issued.secret);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_compiled_defaults_are_valid() {
        let cli = Cli::try_parse_from(["azora"]).unwrap();
        cli.settings.validate().unwrap();
    }

    #[test]
    fn a_setting_that_does_not_parse_is_refused_at_parse_time_with_its_flag() {
        for (flag, value, reason) in [
            ("--rate-limit", "boss=3", "is not a role"),
            ("--allocation-bp", "5000,5000", "give four basis points"),
            ("--kyc-transfer-threshold", "ten", ""),
            ("--knowledge-reward-max", "0", "greater than zero"),
            ("--mining-auto-confirm-limit", "-1", ""),
        ] {
            let argument = format!("{flag}={value}");
            let error = Cli::try_parse_from(["azora", argument.as_str()]).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{flag}"
            );
            let message = error.to_string();
            assert!(
                message.contains(flag) && message.contains(reason),
                "{message}"
            );
        }
    }
}
