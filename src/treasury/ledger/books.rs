//! The books of one batch: the balances of the accounts it locked, as they
//! stand mid-batch, beside the balances as they were locked, so that only
//! what moved is written back.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::error::Error;
use crate::money::format_azr;
use crate::treasury::domain::{Account, Balance, Bucket, Leg, SystemAccount};
use crate::treasury::store::LockedWallet;

/// `Clone`: settling an atomic group keeps a copy to restore if one of its
/// commands fails.
#[derive(Clone)]
pub(super) struct Books {
    wallets: HashMap<Uuid, LockedWallet>,
    system: BTreeMap<SystemAccount, i64>,
    locked_wallets: HashMap<Uuid, Balance>,
    locked_system: BTreeMap<SystemAccount, i64>,
}

impl Books {
    /// The books as locked. A batch that only transfers between wallets
    /// locks no system account, so `system` may be empty.
    pub(super) fn new(
        wallets: HashMap<Uuid, LockedWallet>,
        system: BTreeMap<SystemAccount, i64>,
    ) -> Self {
        let locked_wallets = wallets
            .iter()
            .map(|(id, wallet)| (*id, wallet.balance))
            .collect();
        let locked_system = system.clone();
        Self {
            wallets,
            system,
            locked_wallets,
            locked_system,
        }
    }

    pub(super) fn wallet(&self, id: &Uuid) -> Option<&LockedWallet> {
        self.wallets.get(id)
    }

    /// One bucket's balance now; `None` when the account was not locked.
    #[cfg(test)]
    pub(super) fn balance(&self, account: Account, bucket: Bucket) -> Option<i64> {
        match account {
            Account::Wallet(id) => self.wallets.get(&id).map(|wallet| match bucket {
                Bucket::Available => wallet.balance.available,
                Bucket::Pending => wallet.balance.pending,
                Bucket::Staked => wallet.balance.staked,
            }),
            Account::System(system) => self.system.get(&system).copied(),
        }
    }

    fn slot(&mut self, account: Account, bucket: Bucket) -> Result<&mut i64, Error> {
        match account {
            Account::Wallet(id) => {
                let wallet = self
                    .wallets
                    .get_mut(&id)
                    .ok_or_else(|| Error::internal(format!("wallet {id} was not locked")))?;
                Ok(match bucket {
                    Bucket::Available => &mut wallet.balance.available,
                    Bucket::Pending => &mut wallet.balance.pending,
                    Bucket::Staked => &mut wallet.balance.staked,
                })
            }
            Account::System(system) => self.system.get_mut(&system).ok_or_else(|| {
                Error::internal(format!("system account {} was not locked", system.as_str()))
            }),
        }
    }

    /// Applies all legs or none: no holding account may end below zero.
    pub(super) fn post(&mut self, legs: &[Leg]) -> Result<(), Error> {
        let mut changes: BTreeMap<(Account, Bucket), i64> = BTreeMap::new();
        for leg in legs {
            *changes.entry(leg.from).or_default() -= leg.micros;
            *changes.entry(leg.to).or_default() += leg.micros;
        }
        let mut updated = Vec::with_capacity(changes.len());
        for ((account, bucket), change) in changes {
            let current = *self.slot(account, bucket)?;
            let next = current
                .checked_add(change)
                .ok_or_else(|| Error::FailedPrecondition {
                    reason: "BALANCE_OUT_OF_RANGE",
                    message: "the resulting balance would be out of range".into(),
                })?;
            let may_go_negative =
                matches!(account, Account::System(system) if system.may_go_negative());
            if next < 0 && !may_go_negative {
                return Err(Error::FailedPrecondition {
                    reason: "INSUFFICIENT_FUNDS",
                    message: format!(
                        "{} has {} AZR {}; {} AZR are needed",
                        describe(account),
                        format_azr(current),
                        bucket.as_str(),
                        format_azr(-change)
                    ),
                });
            }
            updated.push(((account, bucket), next));
        }
        for ((account, bucket), next) in updated {
            *self.slot(account, bucket)? = next;
        }
        Ok(())
    }

    /// The wallets whose balances differ from what was locked, in id order.
    pub(super) fn changed_wallets(&self) -> Vec<(Uuid, Balance)> {
        let mut changed: Vec<(Uuid, Balance)> = self
            .wallets
            .iter()
            .filter(|(id, wallet)| self.locked_wallets.get(id) != Some(&wallet.balance))
            .map(|(id, wallet)| (*id, wallet.balance))
            .collect();
        changed.sort_unstable_by_key(|(id, _)| *id);
        changed
    }

    /// How much more all the locked wallets hold, and have staked, than
    /// when they were locked (what the batch adds to the ledger's wallet
    /// totals). Every balance fits an i64 and so does the whole supply.
    pub(super) fn wallet_totals_change(&self) -> (i64, i64) {
        let (mut held, mut staked) = (0i128, 0i128);
        for (id, wallet) in &self.wallets {
            let locked = self.locked_wallets.get(id).copied().unwrap_or_default();
            let now = wallet.balance;
            held += i128::from(now.available) + i128::from(now.pending) + i128::from(now.staked)
                - i128::from(locked.available)
                - i128::from(locked.pending)
                - i128::from(locked.staked);
            staked += i128::from(now.staked) - i128::from(locked.staked);
        }
        (
            i64::try_from(held).unwrap_or(i64::MAX),
            i64::try_from(staked).unwrap_or(i64::MAX),
        )
    }

    /// The system accounts whose balances differ from what was locked, in
    /// code order.
    pub(super) fn changed_system(&self) -> Vec<(SystemAccount, i64)> {
        self.system
            .iter()
            .filter(|(account, micros)| self.locked_system.get(account) != Some(micros))
            .map(|(account, micros)| (*account, *micros))
            .collect()
    }
}

fn describe(account: Account) -> String {
    match account {
        Account::Wallet(id) => format!("wallet {id}"),
        Account::System(system) => format!("the {} account", system.as_str()),
    }
}
