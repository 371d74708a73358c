//! Settling a batch: the pure step between locking and writing. It takes
//! what was read under lock and the batch's commands, and decides, in
//! arrival order, each command's fate and everything the batch will write.
//! No database and no cache, and the batch's time is given (only the ids of
//! new transactions are drawn here): what it returns is the whole of the
//! batch's effect, so it is tested without a database.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Request;
use super::group::{GroupSettled, GroupSpan, StoredItem, answered_by_group, failure_of};
use super::inputs::Inputs;
use super::plan::{Context, Plan, plan};
use crate::cache::{Generation, Invalidation};
use crate::error::Error;
use crate::treasury::domain::{
    Account, AllocationPolicy, Balance, BatchMode, Command, SystemAccount, Transaction,
    TransactionStatus,
};
use crate::treasury::store::{NewEntry, NewIdempotencyKey, NewTransferBatch, TotalsChange};

/// The fate of one command.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Applied by this batch (boxed: a transaction is several times the
    /// size of the other outcomes).
    Settled(Box<Transaction>),
    /// A repeat of a request already applied (committed earlier, or earlier
    /// in this batch): answered with that transaction, read once the batch
    /// is written.
    Replay(Uuid),
    /// Refused alone; the rest of the batch goes on.
    Rejected(Error),
}

/// Everything a batch writes, and the cached reads that changes.
#[derive(Debug)]
pub(super) struct Settlement {
    /// One per request, in order.
    pub(super) outcomes: Vec<Outcome>,
    /// The batch's time: when its transactions were created or resolved and
    /// its entries posted.
    pub(super) posted_at: DateTime<Utc>,
    /// New balances of the wallets that moved, in id order.
    pub(super) wallet_balances: Vec<(Uuid, Balance)>,
    /// New balances of the system accounts that moved, in code order.
    pub(super) system_balances: Vec<(SystemAccount, i64)>,
    /// Transactions to insert.
    pub(super) created: Vec<Transaction>,
    /// Pending transactions confirmed or failed: their new state.
    pub(super) resolved: Vec<Transaction>,
    /// Balanced entries, each with its transaction and the running
    /// balances of the wallets it moves.
    pub(super) entries: Vec<NewEntry>,
    /// (transaction, wallet): the wallets a new transaction moves besides
    /// the two it names.
    pub(super) other_wallets: Vec<(Uuid, Uuid)>,
    pub(super) new_keys: Vec<NewIdempotencyKey>,
    /// What the batch adds to the ledger's totals.
    pub(super) totals: TotalsChange,
    /// The wallets that moved and, if any transaction was created or
    /// resolved, the ledger totals. Replays add theirs when written.
    pub(super) invalidation: Invalidation,
    /// One per group, in order.
    pub(super) groups: Vec<GroupSettled>,
    /// The groups applied by this batch, with their results.
    pub(super) new_groups: Vec<NewTransferBatch>,
}

#[cfg(test)]
pub(super) fn settle(
    inputs: Inputs,
    policy: &AllocationPolicy,
    requests: &[Request],
    now: DateTime<Utc>,
) -> Settlement {
    settle_groups(inputs, policy, requests, &[], now)
}

/// [`settle`] for a batch some of whose requests form groups (`spans`, in
/// order, not overlapping): a group's items are settled together, all or
/// none when it is atomic.
pub(super) fn settle_groups(
    inputs: Inputs,
    policy: &AllocationPolicy,
    requests: &[Request],
    spans: &[GroupSpan],
    now: DateTime<Utc>,
) -> Settlement {
    let mut batch = Batch {
        inputs,
        policy,
        now,
        claimed_keys: HashMap::new(),
        created: Vec::new(),
        resolved: Vec::new(),
        entries: Vec::new(),
        other_wallets: Vec::new(),
        new_keys: Vec::new(),
        claimed_groups: HashMap::new(),
        groups: Vec::with_capacity(spans.len()),
        new_groups: Vec::new(),
    };
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut spans = spans.iter().peekable();
    let mut index = 0;
    while index < requests.len() {
        if let Some(span) = spans.next_if(|span| span.start == index) {
            let items = &requests[span.start..span.start + span.len];
            let settled = batch.settle_group(items, span, &mut outcomes);
            batch.groups.push(settled);
            index += span.len.max(1);
        } else {
            outcomes.push(batch.settle_one(&requests[index]));
            index += 1;
        }
    }
    batch.finish(outcomes)
}

/// What a replayed transaction may have changed: its first call may have
/// committed and died before its invalidation reached Redis, so its retry
/// invalidates again.
pub(super) fn replay_invalidation(original: &Transaction) -> Invalidation {
    Invalidation::of(
        original
            .from_wallet
            .into_iter()
            .chain(original.to_wallet)
            .map(Generation::Wallet)
            .chain([Generation::Ledger]),
    )
}

/// A batch being settled: its inputs as they stand after the commands so
/// far, and what those commands will write.
struct Batch<'a> {
    inputs: Inputs,
    policy: &'a AllocationPolicy,
    now: DateTime<Utc>,
    /// Keys taken earlier in this batch, as `inputs.stored_keys`.
    claimed_keys: HashMap<(Uuid, String), (String, Uuid)>,
    created: Vec<Transaction>,
    resolved: Vec<Transaction>,
    entries: Vec<NewEntry>,
    other_wallets: Vec<(Uuid, Uuid)>,
    new_keys: Vec<NewIdempotencyKey>,
    /// Groups applied earlier in this batch: key → (fingerprint, results).
    claimed_groups: HashMap<(Uuid, String), (String, Vec<StoredItem>)>,
    groups: Vec<GroupSettled>,
    new_groups: Vec<NewTransferBatch>,
}

/// What settling a group may have to undo: the lengths of what the batch
/// writes, and the books, as they stood before the group.
struct Checkpoint {
    books: super::books::Books,
    created: usize,
    resolved: usize,
    entries: usize,
    other_wallets: usize,
    new_keys: usize,
}

impl Batch<'_> {
    /// Settles a group's items, pushing one outcome per item; its results
    /// are its own (see [`GroupSettled`]).
    fn settle_group(
        &mut self,
        items: &[Request],
        span: &GroupSpan,
        outcomes: &mut Vec<Outcome>,
    ) -> GroupSettled {
        let first = outcomes.len();
        let stand_ins = |outcomes: &mut Vec<Outcome>| {
            outcomes.truncate(first);
            outcomes.extend(items.iter().map(|_| Outcome::Rejected(answered_by_group())));
        };
        let taken = self
            .inputs
            .stored_groups
            .get(&span.key)
            .or_else(|| self.claimed_groups.get(&span.key));
        if let Some((fingerprint, results)) = taken {
            if *fingerprint != span.fingerprint || results.len() != items.len() {
                stand_ins(outcomes);
                return GroupSettled::Refused(Error::invalid(
                    "request_id",
                    "was already used for a different request",
                ));
            }
            let results = results.clone();
            outcomes.extend(results.iter().map(|result| match result {
                StoredItem::Applied(id) => Outcome::Replay(*id),
                StoredItem::Refused(_) => Outcome::Rejected(answered_by_group()),
            }));
            return GroupSettled::Results(results);
        }
        let checkpoint = (span.mode == BatchMode::Atomic).then(|| Checkpoint {
            books: self.inputs.books.clone(),
            created: self.created.len(),
            resolved: self.resolved.len(),
            entries: self.entries.len(),
            other_wallets: self.other_wallets.len(),
            new_keys: self.new_keys.len(),
        });
        let mut results = Vec::with_capacity(items.len());
        for (index, request) in items.iter().enumerate() {
            match self.settle_one(request) {
                Outcome::Rejected(error) => match checkpoint {
                    Some(checkpoint) => {
                        self.restore(checkpoint);
                        stand_ins(outcomes);
                        return GroupSettled::Aborted { index, error };
                    }
                    None => {
                        results.push(StoredItem::Refused(failure_of(error)));
                        outcomes.push(Outcome::Rejected(answered_by_group()));
                    }
                },
                Outcome::Settled(transaction) => {
                    results.push(StoredItem::Applied(transaction.id));
                    outcomes.push(Outcome::Settled(transaction));
                }
                Outcome::Replay(id) => {
                    results.push(StoredItem::Applied(id));
                    outcomes.push(Outcome::Replay(id));
                }
            }
        }
        self.claimed_groups.insert(
            span.key.clone(),
            (span.fingerprint.clone(), results.clone()),
        );
        self.new_groups.push(NewTransferBatch {
            caller: span.key.0,
            request_id: span.key.1.clone(),
            mode: span.mode.as_str(),
            fingerprint: span.fingerprint.clone(),
            item_count: items.len() as i64,
            results: serde_json::to_string(&results).unwrap_or_default(),
        });
        GroupSettled::Results(results)
    }

    /// Undoes everything settled since `checkpoint`: the books, what the
    /// batch would write, and the keys the undone commands claimed.
    fn restore(&mut self, checkpoint: Checkpoint) {
        self.inputs.books = checkpoint.books;
        self.created.truncate(checkpoint.created);
        self.resolved.truncate(checkpoint.resolved);
        self.entries.truncate(checkpoint.entries);
        self.other_wallets.truncate(checkpoint.other_wallets);
        for key in self.new_keys.drain(checkpoint.new_keys..) {
            self.claimed_keys.remove(&(key.caller, key.request_id));
        }
    }

    fn settle_one(&mut self, (caller, request_id, command): &Request) -> Outcome {
        let key = (caller.user_id, request_id.as_str().to_owned());
        let fingerprint = command.fingerprint();
        let taken = self
            .inputs
            .stored_keys
            .get(&key)
            .or_else(|| self.claimed_keys.get(&key));
        if let Some((stored, transaction_id)) = taken {
            return if *stored == fingerprint {
                Outcome::Replay(*transaction_id)
            } else {
                Outcome::Rejected(Error::invalid(
                    "request_id",
                    "was already used for a different request",
                ))
            };
        }
        let context = Context {
            caller,
            request_id,
            now: self.now,
            policy: self.policy,
            books: &self.inputs.books,
            referenced: &self.inputs.referenced,
            posted: &self.inputs.posted,
            taken_hashes: &self.inputs.taken_hashes,
        };
        let planned = plan(&context, command)
            .and_then(|planned| self.inputs.books.post(&planned.legs).map(|()| planned));
        match planned {
            Ok(planned) => {
                Outcome::Settled(Box::new(self.record(key, fingerprint, command, planned)))
            }
            Err(error) => Outcome::Rejected(error),
        }
    }

    /// Keeps what a posted plan writes, and what later commands of the batch
    /// must see: its key, its deposit hash, its resolution.
    fn record(
        &mut self,
        (caller, request_id): (Uuid, String),
        fingerprint: String,
        command: &Command,
        planned: Plan,
    ) -> Transaction {
        let Plan {
            transaction,
            legs,
            resolves,
        } = planned;
        // The books now stand after this posting: its running balances.
        let books = &self.inputs.books;
        let after = |account: Account| match account {
            Account::Wallet(id) => books.wallet(&id).map(|wallet| wallet.balance),
            Account::System(_) => None,
        };
        for leg in &legs {
            self.entries.push(NewEntry {
                transaction: transaction.id,
                leg: *leg,
                source_after: after(leg.from.0),
                destination_after: after(leg.to.0),
            });
        }
        if !resolves {
            let named = [transaction.from_wallet, transaction.to_wallet];
            for leg in &legs {
                for account in [leg.from.0, leg.to.0] {
                    if let Account::Wallet(wallet) = account
                        && !named.contains(&Some(wallet))
                        && !self.other_wallets.contains(&(transaction.id, wallet))
                    {
                        self.other_wallets.push((transaction.id, wallet));
                    }
                }
            }
        }
        self.claimed_keys.insert(
            (caller, request_id.clone()),
            (fingerprint.clone(), transaction.id),
        );
        self.new_keys.push(NewIdempotencyKey {
            caller,
            request_id,
            operation: command.operation(),
            fingerprint,
            transaction: transaction.id,
        });
        if let Command::Deposit {
            tx_hash: Some(hash),
            ..
        } = command
        {
            self.inputs.taken_hashes.insert(hash.clone());
        }
        if let Some(original) = transaction.reverses
            && let Some(reversed) = self.inputs.referenced.get_mut(&original)
        {
            // Later commands of the batch see it reversed.
            reversed.reversed_by = Some(transaction.id);
        }
        if resolves {
            self.inputs
                .referenced
                .insert(transaction.id, transaction.clone());
            self.resolved.push(transaction.clone());
        } else {
            self.created.push(transaction.clone());
        }
        transaction
    }

    fn finish(self, outcomes: Vec<Outcome>) -> Settlement {
        let wallet_balances = self.inputs.books.changed_wallets();
        let (held, staked) = self.inputs.books.wallet_totals_change();
        let mut totals = TotalsChange {
            held,
            staked,
            ..TotalsChange::default()
        };
        for created in &self.created {
            totals.add(created.kind, created.status, 1, created.amount_micros);
        }
        // Only a pending transaction is resolved.
        for resolved in &self.resolved {
            totals.add(
                resolved.kind,
                TransactionStatus::Pending,
                -1,
                resolved.amount_micros,
            );
            totals.add(resolved.kind, resolved.status, 1, resolved.amount_micros);
        }
        totals
            .kinds
            .retain(|_, change| *change != Default::default());
        let mut invalidation = Invalidation::of(
            wallet_balances
                .iter()
                .map(|(id, _)| Generation::Wallet(*id)),
        );
        if !self.created.is_empty() || !self.resolved.is_empty() {
            invalidation.add(Generation::Ledger);
        }
        Settlement {
            outcomes,
            posted_at: self.now,
            wallet_balances,
            system_balances: self.inputs.books.changed_system(),
            created: self.created,
            resolved: self.resolved,
            entries: self.entries,
            other_wallets: self.other_wallets,
            new_keys: self.new_keys,
            totals,
            invalidation,
            groups: self.groups,
            new_groups: self.new_groups,
        }
    }
}
