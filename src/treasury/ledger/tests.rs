//! The ledger's rules without a database: batches are settled against an
//! in-memory copy of what the store would hand them under lock (chosen by
//! the same functions that choose what to lock), and what settling decides
//! is kept as the write step would, so a later batch sees it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use super::Request;
use super::books::Books;
use super::group::{GroupSettled, GroupSpan, StoredItem};
use super::inputs::{self, Inputs};
use super::settle::{Outcome, Settlement, replay_invalidation, settle, settle_groups};
use super::writer::audit_events;
use crate::auth::{Principal, Role};
use crate::cache::Generation;
use crate::error::Error;
use crate::money::{Amount, RequestId};
use crate::treasury::domain::{
    Account, AllocationPolicy, Balance, BatchMode, Bucket, BurnSource, Command, Leg, Note,
    SystemAccount, Transaction, TransactionKind, TransactionStatus,
};
use crate::treasury::store::{LockedWallet, TotalsChange};

const AZR: i64 = 1_000_000;

fn policy() -> AllocationPolicy {
    AllocationPolicy {
        version: 3,
        treasury_bp: 7000,
        founder_bp: 1100,
        burn_bp: 500,
        circulation_bp: 1400,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 15, 9, 26).unwrap()
}

fn person(role: Role) -> Principal {
    Principal {
        user_id: Uuid::now_v7(),
        role,
        user_role: role,
        ..Principal::command_line("test")
    }
}

fn amount(micros: i64) -> Amount {
    Amount::from_micros(micros).unwrap()
}

fn request(caller: &Principal, request_id: &str, command: Command) -> Request {
    (
        caller.clone(),
        RequestId::parse("request_id", request_id).unwrap(),
        command,
    )
}

fn transfer(from_wallet: Uuid, to_wallet: Uuid, micros: i64) -> Command {
    Command::Transfer {
        from_wallet,
        to_wallet,
        amount: amount(micros),
        note: Note::default(),
    }
}

fn mint(to_wallet: Option<Uuid>, micros: i64) -> Command {
    Command::Mint {
        amount: amount(micros),
        to_wallet,
        note: Note::default(),
        mining_session: None,
        pending: false,
        backing_reference: None,
    }
}

fn mining_claim(to_wallet: Uuid, micros: i64) -> Command {
    Command::Mint {
        amount: amount(micros),
        to_wallet: Some(to_wallet),
        note: Note::default(),
        mining_session: Some(Uuid::now_v7()),
        pending: true,
        backing_reference: None,
    }
}

fn deposit(to_wallet: Uuid, micros: i64, tx_hash: Option<&str>, pending: bool) -> Command {
    Command::Deposit {
        to_wallet,
        amount: amount(micros),
        tx_hash: tx_hash.map(str::to_owned),
        pending,
        note: Note::default(),
    }
}

fn withdraw(from_wallet: Uuid, micros: i64) -> Command {
    Command::Withdraw {
        from_wallet,
        amount: amount(micros),
        destination_address: "0x00000000000000000000000000000000000000aa".into(),
        note: Note::default(),
    }
}

fn confirm(transaction_id: Uuid, backing_reference: Option<&str>) -> Command {
    Command::Confirm {
        transaction_id,
        gas_used: 21_000,
        gas_price_wei: 7,
        confirmed_at: None,
        backing_reference: backing_reference.map(str::to_owned),
    }
}

fn fail(transaction_id: Uuid) -> Command {
    Command::Fail {
        transaction_id,
        reason: "the chain refused it".into(),
    }
}

fn available(account: Account) -> (Account, Bucket) {
    (account, Bucket::Available)
}

/// What the store holds between batches, kept in memory.
struct Store {
    wallets: HashMap<Uuid, LockedWallet>,
    system: BTreeMap<SystemAccount, i64>,
    transactions: HashMap<Uuid, Transaction>,
    /// Each transaction's entries, as written.
    entries: HashMap<Uuid, Vec<Leg>>,
    keys: HashMap<(Uuid, String), (String, Uuid)>,
}

impl Store {
    fn new() -> Self {
        Self {
            wallets: HashMap::new(),
            system: SystemAccount::ALL
                .iter()
                .map(|account| (*account, 0))
                .collect(),
            transactions: HashMap::new(),
            entries: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    fn open_wallet(&mut self, owner: &Principal, available: i64) -> Uuid {
        let id = Uuid::now_v7();
        let balance = Balance {
            available,
            ..Balance::default()
        };
        self.wallets.insert(
            id,
            LockedWallet {
                owner: owner.user_id,
                balance,
            },
        );
        id
    }

    /// What `inputs::lock` would read for `requests`.
    fn inputs(&self, requests: &[Request]) -> Inputs {
        let stored_keys = inputs::idempotency_keys(requests)
            .into_iter()
            .filter_map(|key| self.keys.get(&key).cloned().map(|stored| (key, stored)))
            .collect();
        let referenced: HashMap<Uuid, Transaction> = inputs::referenced_ids(requests)
            .into_iter()
            .filter_map(|id| self.transactions.get(&id).cloned().map(|found| (id, found)))
            .collect();
        let hashes: HashSet<String> = inputs::deposit_hashes(requests).into_iter().collect();
        let taken_hashes = self
            .transactions
            .values()
            .filter(|stored| hashes.contains(&stored.tx_hash))
            .map(|stored| stored.tx_hash.clone())
            .collect();
        let wallets = inputs::wallets_to_lock(requests, &referenced)
            .into_iter()
            .filter_map(|id| self.wallets.get(&id).map(|wallet| (id, *wallet)))
            .collect();
        let system = if inputs::needs_system_accounts(requests) {
            self.system.clone()
        } else {
            BTreeMap::new()
        };
        let posted = inputs::reversed_ids(requests, &referenced)
            .into_iter()
            .map(|id| (id, self.entries.get(&id).cloned().unwrap_or_default()))
            .collect();
        Inputs {
            stored_keys,
            referenced,
            posted,
            taken_hashes,
            books: Books::new(wallets, system),
            stored_groups: HashMap::new(),
        }
    }

    /// Settles one batch and keeps what it would write.
    fn settle(&mut self, requests: &[Request]) -> Settlement {
        let settlement = settle(self.inputs(requests), &policy(), requests, now());
        for (id, balance) in &settlement.wallet_balances {
            self.wallets.get_mut(id).unwrap().balance = *balance;
        }
        for (account, micros) in &settlement.system_balances {
            self.system.insert(*account, *micros);
        }
        for written in settlement.created.iter().chain(&settlement.resolved) {
            self.transactions.insert(written.id, written.clone());
        }
        for written in &settlement.created {
            if let Some(original) = written.reverses {
                self.transactions.get_mut(&original).unwrap().reversed_by = Some(written.id);
            }
        }
        for entry in &settlement.entries {
            self.entries
                .entry(entry.transaction)
                .or_default()
                .push(entry.leg);
        }
        for key in &settlement.new_keys {
            self.keys.insert(
                (key.caller, key.request_id.clone()),
                (key.fingerprint.clone(), key.transaction),
            );
        }
        settlement
    }

    fn balance(&self, wallet: Uuid) -> Balance {
        self.wallets[&wallet].balance
    }

    fn available(&self, wallet: Uuid) -> i64 {
        self.balance(wallet).available
    }

    fn system(&self, account: SystemAccount) -> i64 {
        self.system[&account]
    }
}

fn settled(outcome: &Outcome) -> &Transaction {
    match outcome {
        Outcome::Settled(transaction) => transaction,
        other => panic!("expected a settled command, got {other:?}"),
    }
}

fn rejected(outcome: &Outcome) -> &Error {
    match outcome {
        Outcome::Rejected(error) => error,
        other => panic!("expected a rejected command, got {other:?}"),
    }
}

fn failed_precondition(outcome: &Outcome) -> &'static str {
    match rejected(outcome) {
        Error::FailedPrecondition { reason, .. } => reason,
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
}

fn invalid_field(outcome: &Outcome) -> String {
    match rejected(outcome) {
        Error::InvalidArgument(violations) => violations[0].field.clone(),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

/// The entries as (transaction, leg), without their running balances.
fn legs(settlement: &Settlement) -> Vec<(Uuid, Leg)> {
    settlement
        .entries
        .iter()
        .map(|entry| (entry.transaction, entry.leg))
        .collect()
}

/// What the entries move into (positive) and out of (negative) each bucket.
fn net(entries: &[(Uuid, Leg)]) -> BTreeMap<(Account, Bucket), i64> {
    let mut net = BTreeMap::new();
    for (_, leg) in entries {
        assert!(leg.micros > 0, "an entry moves a positive amount: {leg:?}");
        assert_ne!(leg.from, leg.to, "an entry moves between two buckets");
        *net.entry(leg.from).or_default() -= leg.micros;
        *net.entry(leg.to).or_default() += leg.micros;
    }
    net.retain(|_, change| *change != 0);
    net
}

/// The entries explain every balance the batch writes, and nothing else.
fn assert_entries_explain_balances(before: &Store, settlement: &Settlement) {
    let mut moved = BTreeMap::new();
    for (id, after) in &settlement.wallet_balances {
        let was = before.balance(*id);
        for (bucket, change) in [
            (Bucket::Available, after.available - was.available),
            (Bucket::Pending, after.pending - was.pending),
            (Bucket::Staked, after.staked - was.staked),
        ] {
            if change != 0 {
                moved.insert((Account::Wallet(*id), bucket), change);
            }
        }
    }
    for (account, after) in &settlement.system_balances {
        moved.insert(
            available(Account::System(*account)),
            after - before.system(*account),
        );
    }
    assert_eq!(net(&legs(settlement)), moved);
}

/// Every entry carries the balances of the wallets it moves once its
/// posting (its transaction's legs, which are consecutive) was applied to
/// the books as locked; a system side carries none.
fn assert_running_balances(before: &Store, settlement: &Settlement) {
    let mut books: HashMap<Uuid, Balance> = HashMap::new();
    let entries = &settlement.entries;
    let mut start = 0;
    while start < entries.len() {
        let transaction = entries[start].transaction;
        let end = start
            + entries[start..]
                .iter()
                .take_while(|entry| entry.transaction == transaction)
                .count();
        for entry in &entries[start..end] {
            for ((account, bucket), sign) in [(entry.leg.from, -1), (entry.leg.to, 1)] {
                if let Account::Wallet(id) = account {
                    let balance = books.entry(id).or_insert_with(|| before.balance(id));
                    let slot = match bucket {
                        Bucket::Available => &mut balance.available,
                        Bucket::Pending => &mut balance.pending,
                        Bucket::Staked => &mut balance.staked,
                    };
                    *slot += sign * entry.leg.micros;
                }
            }
        }
        for entry in &entries[start..end] {
            for (account, after) in [
                (entry.leg.from.0, entry.source_after),
                (entry.leg.to.0, entry.destination_after),
            ] {
                match account {
                    Account::Wallet(id) => assert_eq!(after, Some(books[&id]), "{entry:?}"),
                    Account::System(_) => assert_eq!(after, None, "{entry:?}"),
                }
            }
        }
        start = end;
    }
}

/// The totals a batch adds are its new transactions, its resolutions (out
/// of pending) and what the wallets it wrote gained.
fn assert_totals(before: &Store, settlement: &Settlement) {
    let mut expected = TotalsChange::default();
    for created in &settlement.created {
        expected.add(created.kind, created.status, 1, created.amount_micros);
    }
    for resolved in &settlement.resolved {
        expected.add(
            resolved.kind,
            TransactionStatus::Pending,
            -1,
            resolved.amount_micros,
        );
        expected.add(resolved.kind, resolved.status, 1, resolved.amount_micros);
    }
    expected
        .kinds
        .retain(|_, change| *change != Default::default());
    for (id, after) in &settlement.wallet_balances {
        let was = before.balance(*id);
        expected.held += (after.available + after.pending + after.staked)
            - (was.available + was.pending + was.staked);
        expected.staked += after.staked - was.staked;
    }
    assert_eq!(settlement.totals, expected);
}

fn settle_checked(store: &mut Store, requests: &[Request]) -> Settlement {
    let before = Store {
        wallets: store.wallets.clone(),
        system: store.system.clone(),
        transactions: HashMap::new(),
        entries: HashMap::new(),
        keys: HashMap::new(),
    };
    let settlement = store.settle(requests);
    assert_entries_explain_balances(&before, &settlement);
    assert_running_balances(&before, &settlement);
    assert_totals(&before, &settlement);
    settlement
}

#[test]
fn a_transfer_moves_available_balance_and_writes_one_balanced_entry() {
    let mut store = Store::new();
    let (alice, bob) = (person(Role::Member), person(Role::Member));
    let from = store.open_wallet(&alice, 100 * AZR);
    let to = store.open_wallet(&bob, 5 * AZR);

    let batch = [request(&alice, "t-1", transfer(from, to, 30 * AZR))];
    let settlement = settle_checked(&mut store, &batch);

    let moved = settled(&settlement.outcomes[0]);
    assert_eq!(moved.kind, TransactionKind::Transfer);
    assert_eq!(moved.status, TransactionStatus::Confirmed);
    assert_eq!((moved.from_wallet, moved.to_wallet), (Some(from), Some(to)));
    assert_eq!(moved.amount_micros, 30 * AZR);
    assert_eq!(moved.requested_by, alice.user_id);
    assert_eq!(moved.request_id, "t-1");
    assert_eq!((moved.created_at, moved.confirmed_at), (now(), Some(now())));
    assert_eq!(
        legs(&settlement),
        vec![(
            moved.id,
            Leg {
                from: available(Account::Wallet(from)),
                to: available(Account::Wallet(to)),
                micros: 30 * AZR,
            }
        )]
    );
    assert_eq!(
        (store.available(from), store.available(to)),
        (70 * AZR, 35 * AZR)
    );
    assert!(settlement.system_balances.is_empty());
    assert_eq!(settlement.created, vec![moved.clone()]);
    assert!(settlement.resolved.is_empty());
    assert_eq!(settlement.new_keys.len(), 1);
    assert_eq!(settlement.new_keys[0].operation, "transfer");
    assert_eq!(settlement.new_keys[0].transaction, moved.id);
    let mut expected = vec![
        Generation::Wallet(from),
        Generation::Wallet(to),
        Generation::Ledger,
    ];
    expected.sort();
    assert_eq!(
        settlement.invalidation.generations().collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn a_transfer_larger_than_the_balance_is_rejected_and_leaves_the_books_unchanged() {
    let mut store = Store::new();
    let (alice, bob) = (person(Role::Member), person(Role::Member));
    let from = store.open_wallet(&alice, 10 * AZR);
    let to = store.open_wallet(&bob, 0);

    let batch = [request(&alice, "t-1", transfer(from, to, 10 * AZR + 1))];
    let settlement = store.settle(&batch);

    assert_eq!(
        failed_precondition(&settlement.outcomes[0]),
        "INSUFFICIENT_FUNDS"
    );
    assert!(settlement.wallet_balances.is_empty());
    assert!(settlement.entries.is_empty());
    assert!(settlement.created.is_empty());
    assert!(settlement.new_keys.is_empty());
    assert!(settlement.invalidation.is_empty());
    assert_eq!((store.available(from), store.available(to)), (10 * AZR, 0));
}

#[test]
fn a_later_command_spends_what_an_earlier_command_of_the_same_batch_delivered() {
    let mut store = Store::new();
    let (alice, bob, carol) = (
        person(Role::Member),
        person(Role::Member),
        person(Role::Member),
    );
    let alices = store.open_wallet(&alice, 10 * AZR);
    let bobs = store.open_wallet(&bob, 0);
    let carols = store.open_wallet(&carol, 0);

    let batch = [
        request(&alice, "a-1", transfer(alices, bobs, 10 * AZR)),
        request(&bob, "b-1", transfer(bobs, carols, 10 * AZR)),
    ];
    let settlement = settle_checked(&mut store, &batch);

    settled(&settlement.outcomes[0]);
    settled(&settlement.outcomes[1]);
    assert_eq!(settlement.entries.len(), 2);
    assert_eq!(
        (
            store.available(alices),
            store.available(bobs),
            store.available(carols)
        ),
        (0, 0, 10 * AZR)
    );
}

#[test]
fn a_rejected_command_does_not_undo_its_neighbours() {
    let mut store = Store::new();
    let (alice, bob, carol) = (
        person(Role::Member),
        person(Role::Member),
        person(Role::Member),
    );
    let alices = store.open_wallet(&alice, 10 * AZR);
    let bobs = store.open_wallet(&bob, 0);
    let carols = store.open_wallet(&carol, 0);

    let batch = [
        request(&alice, "a-1", transfer(alices, bobs, 6 * AZR)),
        request(&alice, "a-2", transfer(alices, bobs, 6 * AZR)),
        request(&alice, "a-3", transfer(alices, carols, 4 * AZR)),
    ];
    let settlement = settle_checked(&mut store, &batch);

    settled(&settlement.outcomes[0]);
    assert_eq!(
        failed_precondition(&settlement.outcomes[1]),
        "INSUFFICIENT_FUNDS"
    );
    settled(&settlement.outcomes[2]);
    assert_eq!(settlement.created.len(), 2);
    assert_eq!(settlement.new_keys.len(), 2);
    assert_eq!(
        (
            store.available(alices),
            store.available(bobs),
            store.available(carols)
        ),
        (0, 6 * AZR, 4 * AZR)
    );
}

#[test]
fn only_the_owner_moves_money_out_of_a_wallet_and_a_missing_wallet_looks_the_same() {
    let mut store = Store::new();
    let (alice, mallory) = (person(Role::Member), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let mallorys = store.open_wallet(&mallory, 0);
    let missing = Uuid::now_v7();

    let batch = [
        request(&mallory, "m-1", transfer(alices, mallorys, AZR)),
        request(&mallory, "m-2", transfer(missing, mallorys, AZR)),
        request(&mallory, "m-3", withdraw(alices, AZR)),
        request(
            &mallory,
            "m-4",
            Command::PoolPayment {
                from_wallet: alices,
                pool: SystemAccount::TreasuryReserve,
                amount: amount(AZR),
                note: Note::default(),
            },
        ),
    ];
    let settlement = store.settle(&batch);

    for outcome in &settlement.outcomes {
        assert!(matches!(rejected(outcome), Error::PermissionDenied));
    }
    assert!(settlement.invalidation.is_empty());
    assert_eq!(store.available(alices), 10 * AZR);
}

#[test]
fn a_transfer_to_a_missing_wallet_is_not_found() {
    let mut store = Store::new();
    let alice = person(Role::Member);
    let alices = store.open_wallet(&alice, 10 * AZR);

    let batch = [request(
        &alice,
        "t-1",
        transfer(alices, Uuid::now_v7(), AZR),
    )];
    let settlement = store.settle(&batch);

    assert!(matches!(
        rejected(&settlement.outcomes[0]),
        Error::NotFound {
            entity: "wallet",
            ..
        }
    ));
    assert_eq!(store.available(alices), 10 * AZR);
}

#[test]
fn a_balance_past_the_largest_integer_is_refused() {
    let mut store = Store::new();
    let (alice, bob) = (person(Role::Member), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let bobs = store.open_wallet(&bob, i64::MAX - 1);

    let settlement = store.settle(&[request(&alice, "t-1", transfer(alices, bobs, 2))]);

    assert_eq!(
        failed_precondition(&settlement.outcomes[0]),
        "BALANCE_OUT_OF_RANGE"
    );
    assert_eq!(store.available(alices), 10 * AZR);
}

#[test]
fn a_mint_splits_its_amount_by_the_policy_and_its_entries_sum_to_the_amount() {
    let mut store = Store::new();
    let (treasurer, miner) = (person(Role::Treasurer), person(Role::Member));
    let miners = store.open_wallet(&miner, 0);

    let settlement = settle_checked(
        &mut store,
        &[request(&treasurer, "m-1", mint(Some(miners), 100 * AZR))],
    );

    let minted = settled(&settlement.outcomes[0]);
    let split = minted.allocation.unwrap();
    assert_eq!(split.policy_version, 3);
    assert_eq!(
        (split.treasury, split.founder, split.burn, split.circulation),
        (70 * AZR, 11 * AZR, 5 * AZR, 14 * AZR)
    );
    assert_eq!(minted.status, TransactionStatus::Confirmed);
    assert_eq!(settlement.entries.len(), 4);
    assert_eq!(
        settlement
            .entries
            .iter()
            .map(|entry| entry.leg.micros)
            .sum::<i64>(),
        100 * AZR
    );
    assert_eq!(store.system(SystemAccount::Issuance), -100 * AZR);
    assert_eq!(store.system(SystemAccount::TreasuryReserve), 70 * AZR);
    assert_eq!(store.system(SystemAccount::FounderPool), 11 * AZR);
    assert_eq!(store.system(SystemAccount::Burned), 5 * AZR);
    assert_eq!(store.available(miners), 14 * AZR);
}

#[test]
fn a_mint_to_no_wallet_sends_the_circulation_share_to_the_circulation_pool() {
    let mut store = Store::new();
    let treasurer = person(Role::Treasurer);

    let settlement = settle_checked(
        &mut store,
        &[
            request(&treasurer, "m-1", mint(None, 10 * AZR)),
            request(&treasurer, "m-2", mint(None, 9)),
        ],
    );

    let split = settled(&settlement.outcomes[0]).allocation.unwrap();
    assert_eq!(split.circulation, 14 * AZR / 10);
    // 9 micro-AZR: the founder and burn shares round down to nothing, the
    // treasury takes 6 and circulation the remaining 3; legs of nothing are
    // not written.
    let tiny = settled(&settlement.outcomes[1]).allocation.unwrap();
    assert_eq!(
        (tiny.treasury, tiny.founder, tiny.burn, tiny.circulation),
        (6, 0, 0, 3)
    );
    assert_eq!(settlement.entries.len(), 4 + 2);
    assert_eq!(
        store.system(SystemAccount::CirculationPool),
        14 * AZR / 10 + 3
    );
    assert_eq!(store.system(SystemAccount::Issuance), -(10 * AZR + 9));
}

#[test]
fn a_pending_mint_records_its_allocation_and_writes_no_entries() {
    let mut store = Store::new();
    let miner = person(Role::Member);
    let miners = store.open_wallet(&miner, 0);

    let settlement = store.settle(&[request(&miner, "s-1", mining_claim(miners, 50 * AZR))]);

    let claim = settled(&settlement.outcomes[0]);
    assert_eq!(claim.status, TransactionStatus::Pending);
    assert_eq!((claim.confirmed_at, claim.processed_at), (None, None));
    assert!(claim.mining_session.is_some());
    let split = claim.allocation.unwrap();
    assert_eq!(
        split.treasury + split.founder + split.burn + split.circulation,
        50 * AZR
    );
    assert!(settlement.entries.is_empty());
    assert!(settlement.wallet_balances.is_empty());
    assert!(settlement.system_balances.is_empty());
    assert_eq!(settlement.created.len(), 1);
    assert_eq!(
        settlement.invalidation.generations().collect::<Vec<_>>(),
        vec![Generation::Ledger]
    );
}

#[test]
fn only_a_mining_claim_may_mint_pending() {
    let mut store = Store::new();
    let treasurer = person(Role::Treasurer);
    let command = Command::Mint {
        amount: amount(AZR),
        to_wallet: None,
        note: Note::default(),
        mining_session: None,
        pending: true,
        backing_reference: None,
    };

    let settlement = store.settle(&[request(&treasurer, "m-1", command)]);

    assert!(matches!(
        rejected(&settlement.outcomes[0]),
        Error::Internal(_)
    ));
    assert!(settlement.created.is_empty());
}

#[test]
fn confirming_a_mining_claim_needs_its_backing_and_posts_its_allocation() {
    let mut store = Store::new();
    let (treasurer, miner) = (person(Role::Treasurer), person(Role::Member));
    let miners = store.open_wallet(&miner, 0);
    let claimed = store.settle(&[request(&miner, "s-1", mining_claim(miners, 100 * AZR))]);
    let claim = settled(&claimed.outcomes[0]).id;

    let unbacked = store.settle(&[request(&treasurer, "c-1", confirm(claim, None))]);
    assert_eq!(invalid_field(&unbacked.outcomes[0]), "backing_reference");

    let settlement = settle_checked(
        &mut store,
        &[request(
            &treasurer,
            "c-2",
            confirm(claim, Some("payout-42")),
        )],
    );
    let confirmed = settled(&settlement.outcomes[0]);
    assert_eq!(confirmed.id, claim);
    assert_eq!(confirmed.status, TransactionStatus::Confirmed);
    assert_eq!(confirmed.backing_reference.as_deref(), Some("payout-42"));
    assert_eq!(
        (confirmed.gas_used, confirmed.gas_price_wei),
        (Some(21_000), Some(7))
    );
    assert_eq!(settlement.resolved, vec![confirmed.clone()]);
    assert!(settlement.created.is_empty());
    assert_eq!(settlement.entries.len(), 4);
    assert_eq!(store.available(miners), 14 * AZR);
    assert_eq!(store.system(SystemAccount::Issuance), -100 * AZR);
}

#[test]
fn nobody_resolves_a_mining_claim_paid_to_their_own_wallet() {
    let mut store = Store::new();
    let treasurer = person(Role::Treasurer);
    let treasurers = store.open_wallet(&treasurer, 0);
    let claimed = store.settle(&[request(&treasurer, "s-1", mining_claim(treasurers, AZR))]);
    let claim = settled(&claimed.outcomes[0]).id;

    let settlement = store.settle(&[
        request(&treasurer, "c-1", confirm(claim, Some("payout-1"))),
        request(&treasurer, "f-1", fail(claim)),
    ]);

    assert!(matches!(
        rejected(&settlement.outcomes[0]),
        Error::PermissionDenied
    ));
    assert!(matches!(
        rejected(&settlement.outcomes[1]),
        Error::PermissionDenied
    ));
    assert_eq!(
        store.transactions[&claim].status,
        TransactionStatus::Pending
    );
}

#[test]
fn a_burn_moves_the_amount_to_the_burned_account_and_no_further_than_the_source_holds() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let burn = |source, micros| Command::Burn {
        amount: amount(micros),
        source,
        note: Note::default(),
    };

    let settlement = settle_checked(
        &mut store,
        &[
            request(&treasurer, "b-1", burn(BurnSource::Wallet(alices), 4 * AZR)),
            request(&treasurer, "b-2", burn(BurnSource::Wallet(alices), 7 * AZR)),
            request(
                &treasurer,
                "b-3",
                burn(BurnSource::System(SystemAccount::TreasuryReserve), AZR),
            ),
            request(
                &treasurer,
                "b-4",
                burn(BurnSource::Wallet(Uuid::now_v7()), AZR),
            ),
        ],
    );

    let burned = settled(&settlement.outcomes[0]);
    assert_eq!(
        (burned.kind, burned.from_wallet),
        (TransactionKind::Burn, Some(alices))
    );
    assert_eq!(
        failed_precondition(&settlement.outcomes[1]),
        "INSUFFICIENT_FUNDS"
    );
    assert_eq!(
        failed_precondition(&settlement.outcomes[2]),
        "INSUFFICIENT_FUNDS"
    );
    assert!(matches!(
        rejected(&settlement.outcomes[3]),
        Error::NotFound {
            entity: "wallet",
            ..
        }
    ));
    assert_eq!(store.available(alices), 6 * AZR);
    assert_eq!(store.system(SystemAccount::Burned), 4 * AZR);
    assert_eq!(store.system(SystemAccount::TreasuryReserve), 0);
}

#[test]
fn a_burn_from_a_system_pool_records_the_pool() {
    let mut store = Store::new();
    store.system.insert(SystemAccount::FounderPool, 3 * AZR);
    let treasurer = person(Role::Treasurer);
    let command = Command::Burn {
        amount: amount(2 * AZR),
        source: BurnSource::System(SystemAccount::FounderPool),
        note: Note::default(),
    };

    let settlement = settle_checked(&mut store, &[request(&treasurer, "b-1", command)]);

    let burned = settled(&settlement.outcomes[0]);
    assert_eq!(burned.from_system, Some(SystemAccount::FounderPool));
    assert_eq!(store.system(SystemAccount::FounderPool), AZR);
    assert_eq!(store.system(SystemAccount::Burned), 2 * AZR);
}

#[test]
fn a_withdrawal_holds_the_amount_in_pending_until_it_is_resolved() {
    let mut store = Store::new();
    let alice = person(Role::Member);
    let alices = store.open_wallet(&alice, 10 * AZR);

    let settlement = settle_checked(
        &mut store,
        &[request(&alice, "w-1", withdraw(alices, 4 * AZR))],
    );

    let held = settled(&settlement.outcomes[0]);
    assert_eq!(
        (held.kind, held.status),
        (TransactionKind::Withdrawal, TransactionStatus::Pending)
    );
    assert_eq!(
        held.destination_address.as_deref(),
        Some("0x00000000000000000000000000000000000000aa")
    );
    assert_eq!(
        legs(&settlement),
        vec![(
            held.id,
            Leg {
                from: (Account::Wallet(alices), Bucket::Available),
                to: (Account::Wallet(alices), Bucket::Pending),
                micros: 4 * AZR,
            }
        )]
    );
    assert_eq!(
        store.balance(alices),
        Balance {
            available: 6 * AZR,
            pending: 4 * AZR,
            staked: 0
        }
    );
    let too_much = store.settle(&[request(&alice, "w-2", withdraw(alices, 7 * AZR))]);
    assert_eq!(
        failed_precondition(&too_much.outcomes[0]),
        "INSUFFICIENT_FUNDS"
    );
}

#[test]
fn confirming_a_withdrawal_pays_the_hold_out_to_the_chain() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let held = store.settle(&[request(&alice, "w-1", withdraw(alices, 4 * AZR))]);
    let withdrawal = settled(&held.outcomes[0]).id;

    let settlement = settle_checked(
        &mut store,
        &[request(&treasurer, "c-1", confirm(withdrawal, None))],
    );

    let confirmed = settled(&settlement.outcomes[0]);
    assert_eq!(confirmed.status, TransactionStatus::Confirmed);
    assert_eq!(
        (confirmed.confirmed_at, confirmed.processed_at),
        (Some(now()), Some(now()))
    );
    assert_eq!(
        store.balance(alices),
        Balance {
            available: 6 * AZR,
            pending: 0,
            staked: 0
        }
    );
    assert_eq!(store.system(SystemAccount::External), 4 * AZR);
}

#[test]
fn failing_a_withdrawal_returns_the_hold_to_available() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let held = store.settle(&[request(&alice, "w-1", withdraw(alices, 4 * AZR))]);
    let withdrawal = settled(&held.outcomes[0]).id;

    let settlement = settle_checked(&mut store, &[request(&treasurer, "f-1", fail(withdrawal))]);

    let failed = settled(&settlement.outcomes[0]);
    assert_eq!(failed.status, TransactionStatus::Failed);
    assert_eq!(failed.reason, "the chain refused it");
    assert_eq!(failed.processed_at, Some(now()));
    assert_eq!(settlement.resolved.len(), 1);
    assert_eq!(
        store.balance(alices),
        Balance {
            available: 10 * AZR,
            pending: 0,
            staked: 0
        }
    );
    assert_eq!(store.system(SystemAccount::External), 0);
}

#[test]
fn a_pending_transaction_resolves_once_even_twice_in_one_batch() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let held = store.settle(&[request(&alice, "w-1", withdraw(alices, 4 * AZR))]);
    let withdrawal = settled(&held.outcomes[0]).id;

    let settlement = store.settle(&[
        request(&treasurer, "c-1", confirm(withdrawal, None)),
        request(&treasurer, "f-1", fail(withdrawal)),
        request(&treasurer, "f-2", fail(Uuid::now_v7())),
    ]);

    settled(&settlement.outcomes[0]);
    assert_eq!(
        failed_precondition(&settlement.outcomes[1]),
        "ALREADY_RESOLVED"
    );
    assert!(matches!(
        rejected(&settlement.outcomes[2]),
        Error::NotFound {
            entity: "transaction",
            ..
        }
    ));
    let later = store.settle(&[request(&treasurer, "f-3", fail(withdrawal))]);
    assert_eq!(failed_precondition(&later.outcomes[0]), "ALREADY_RESOLVED");
    assert_eq!(store.balance(alices).pending, 0);
    assert_eq!(store.system(SystemAccount::External), 4 * AZR);
}

#[test]
fn a_confirmation_carries_a_backing_reference_only_for_a_mint_and_never_predates_the_transaction() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let held = store.settle(&[request(&alice, "w-1", withdraw(alices, 4 * AZR))]);
    let withdrawal = settled(&held.outcomes[0]).id;
    let too_early = Command::Confirm {
        transaction_id: withdrawal,
        gas_used: 1,
        gas_price_wei: 1,
        confirmed_at: Some(now() - Duration::seconds(1)),
        backing_reference: None,
    };

    let settlement = store.settle(&[
        request(&treasurer, "c-1", confirm(withdrawal, Some("payout-1"))),
        request(&treasurer, "c-2", too_early),
    ]);

    assert_eq!(invalid_field(&settlement.outcomes[0]), "backing_reference");
    assert_eq!(invalid_field(&settlement.outcomes[1]), "confirm_time");
    assert_eq!(
        store.transactions[&withdrawal].status,
        TransactionStatus::Pending
    );
}

#[test]
fn a_confirmed_deposit_credits_the_wallet_from_the_external_account() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 0);

    let settlement = settle_checked(
        &mut store,
        &[request(
            &treasurer,
            "d-1",
            deposit(alices, 5 * AZR, Some("0xabc"), false),
        )],
    );

    let deposited = settled(&settlement.outcomes[0]);
    assert_eq!(
        (deposited.kind, deposited.status),
        (TransactionKind::Deposit, TransactionStatus::Confirmed)
    );
    assert_eq!(deposited.tx_hash, "0xabc");
    assert_eq!(store.available(alices), 5 * AZR);
    assert_eq!(store.system(SystemAccount::External), -5 * AZR);
}

#[test]
fn a_pending_deposit_writes_no_entries_until_it_is_confirmed() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 0);

    let pending = store.settle(&[request(
        &treasurer,
        "d-1",
        deposit(alices, 5 * AZR, None, true),
    )]);
    let deposit_id = settled(&pending.outcomes[0]).id;
    assert_eq!(
        settled(&pending.outcomes[0]).status,
        TransactionStatus::Pending
    );
    assert!(settled(&pending.outcomes[0]).tx_hash.starts_with("0x"));
    assert!(pending.entries.is_empty());
    assert_eq!(store.available(alices), 0);

    let confirmed = settle_checked(
        &mut store,
        &[request(&treasurer, "c-1", confirm(deposit_id, None))],
    );
    settled(&confirmed.outcomes[0]);
    assert_eq!(store.available(alices), 5 * AZR);
}

#[test]
fn a_chain_transaction_is_deposited_once() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 0);
    let already_exists = |outcome: &Outcome| matches!(rejected(outcome), Error::AlreadyExists { field, .. } if field == "tx_hash");

    let settlement = store.settle(&[
        request(
            &treasurer,
            "d-1",
            deposit(alices, AZR, Some("0xfeed"), false),
        ),
        request(
            &treasurer,
            "d-2",
            deposit(alices, 2 * AZR, Some("0xfeed"), false),
        ),
    ]);
    settled(&settlement.outcomes[0]);
    assert!(already_exists(&settlement.outcomes[1]));

    let later = store.settle(&[request(
        &treasurer,
        "d-3",
        deposit(alices, AZR, Some("0xfeed"), true),
    )]);
    assert!(already_exists(&later.outcomes[0]));
    assert_eq!(store.available(alices), AZR);
}

#[test]
fn a_repeated_request_id_replays_the_first_and_a_reused_one_is_refused() {
    let mut store = Store::new();
    let (alice, bob) = (person(Role::Member), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let bobs = store.open_wallet(&bob, 10 * AZR);

    let settlement = store.settle(&[
        request(&alice, "k", transfer(alices, bobs, AZR)),
        request(&alice, "k", transfer(alices, bobs, AZR)),
        request(&alice, "k", transfer(alices, bobs, 2 * AZR)),
        // Request ids are per caller.
        request(&bob, "k", transfer(bobs, alices, 3 * AZR)),
    ]);
    let first = settled(&settlement.outcomes[0]).id;
    assert!(matches!(settlement.outcomes[1], Outcome::Replay(id) if id == first));
    assert_eq!(invalid_field(&settlement.outcomes[2]), "request_id");
    settled(&settlement.outcomes[3]);
    assert_eq!(settlement.created.len(), 2);
    assert_eq!(settlement.new_keys.len(), 2);
    assert_eq!(
        (store.available(alices), store.available(bobs)),
        (12 * AZR, 8 * AZR)
    );

    let retry = store.settle(&[request(&alice, "k", transfer(alices, bobs, AZR))]);
    assert!(matches!(retry.outcomes[0], Outcome::Replay(id) if id == first));
    assert!(retry.entries.is_empty());
    assert!(retry.new_keys.is_empty());
    assert!(retry.invalidation.is_empty());
    assert_eq!(store.available(alices), 12 * AZR);
}

#[test]
fn a_replay_invalidates_what_its_original_changed() {
    let mut store = Store::new();
    let (alice, bob) = (person(Role::Member), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let bobs = store.open_wallet(&bob, 0);
    let settlement = store.settle(&[request(&alice, "k", transfer(alices, bobs, AZR))]);

    let invalidation = replay_invalidation(settled(&settlement.outcomes[0]));

    let mut expected = vec![
        Generation::Wallet(alices),
        Generation::Wallet(bobs),
        Generation::Ledger,
    ];
    expected.sort();
    assert_eq!(invalidation.generations().collect::<Vec<_>>(), expected);
}

#[test]
fn pool_payouts_and_payments_are_transfers_between_a_pool_and_a_wallet() {
    let mut store = Store::new();
    store.system.insert(SystemAccount::FounderPool, 50 * AZR);
    let (service, founder) = (person(Role::Service), person(Role::Member));
    let founders = store.open_wallet(&founder, 0);
    let payout = |micros| Command::PoolPayout {
        pool: SystemAccount::FounderPool,
        to_wallet: founders,
        amount: amount(micros),
        note: Note::default(),
    };
    let payment = Command::PoolPayment {
        from_wallet: founders,
        pool: SystemAccount::TreasuryReserve,
        amount: amount(5 * AZR),
        note: Note::default(),
    };

    let settlement = settle_checked(
        &mut store,
        &[
            request(&service, "p-1", payout(20 * AZR)),
            request(&founder, "p-2", payment),
            request(&service, "p-3", payout(31 * AZR)),
        ],
    );

    let paid_out = settled(&settlement.outcomes[0]);
    assert_eq!(paid_out.kind, TransactionKind::Transfer);
    assert_eq!(
        (paid_out.from_system, paid_out.to_wallet),
        (Some(SystemAccount::FounderPool), Some(founders))
    );
    let paid_in = settled(&settlement.outcomes[1]);
    assert_eq!(
        (paid_in.from_wallet, paid_in.to_system),
        (Some(founders), Some(SystemAccount::TreasuryReserve))
    );
    assert_eq!(
        failed_precondition(&settlement.outcomes[2]),
        "INSUFFICIENT_FUNDS"
    );
    assert_eq!(store.available(founders), 15 * AZR);
    assert_eq!(store.system(SystemAccount::FounderPool), 30 * AZR);
    assert_eq!(store.system(SystemAccount::TreasuryReserve), 5 * AZR);
}

#[test]
fn posting_is_all_legs_or_none() {
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let wallet = |available| LockedWallet {
        owner: Uuid::now_v7(),
        balance: Balance {
            available,
            ..Balance::default()
        },
    };
    let mut books = Books::new(
        HashMap::from([(alice, wallet(10)), (bob, wallet(0))]),
        BTreeMap::from([(SystemAccount::Burned, 0)]),
    );
    let legs = [
        Leg {
            from: available(Account::Wallet(alice)),
            to: available(Account::Wallet(bob)),
            micros: 10,
        },
        Leg {
            from: available(Account::Wallet(bob)),
            to: available(Account::System(SystemAccount::Burned)),
            micros: 11,
        },
    ];

    assert!(books.post(&legs).is_err());
    assert_eq!(
        books.balance(Account::Wallet(alice), Bucket::Available),
        Some(10)
    );
    assert_eq!(
        books.balance(Account::Wallet(bob), Bucket::Available),
        Some(0)
    );
    assert!(books.changed_wallets().is_empty());

    // Within one posting a leg may spend what an earlier leg delivered.
    books.post(&legs[..1]).unwrap();
    assert_eq!(books.changed_wallets().len(), 2);
    assert!(books.changed_system().is_empty());
}

#[test]
fn a_wallet_or_account_the_batch_did_not_lock_is_a_bug_not_a_rejection_of_the_caller() {
    let alice = Uuid::now_v7();
    let mut books = Books::new(HashMap::new(), BTreeMap::new());
    let leg = Leg {
        from: available(Account::System(SystemAccount::Issuance)),
        to: available(Account::Wallet(alice)),
        micros: 1,
    };

    assert!(matches!(books.post(&[leg]), Err(Error::Internal(_))));
}

#[test]
fn a_batch_locks_every_wallet_it_names_in_id_order_and_system_accounts_only_when_needed() {
    let (alice, treasurer) = (person(Role::Member), person(Role::Treasurer));
    let mut wallets: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let withdrawal = Transaction {
        from_wallet: Some(wallets[3]),
        ..pending_withdrawal()
    };
    let transfers = [
        request(&alice, "t-1", transfer(wallets[2], wallets[0], 1)),
        request(&alice, "t-2", transfer(wallets[0], wallets[2], 1)),
    ];
    assert!(!inputs::needs_system_accounts(&transfers));
    assert_eq!(
        inputs::wallets_to_lock(&transfers, &HashMap::new()),
        vec![wallets[0], wallets[2]]
    );

    let mixed = [
        transfers[0].clone(),
        request(&treasurer, "m-1", mint(Some(wallets[1]), 1)),
        request(&treasurer, "f-1", fail(withdrawal.id)),
    ];
    assert!(inputs::needs_system_accounts(&mixed));
    assert_eq!(inputs::referenced_ids(&mixed), vec![withdrawal.id]);
    let referenced = HashMap::from([(withdrawal.id, withdrawal)]);
    wallets.sort();
    assert_eq!(inputs::wallets_to_lock(&mixed, &referenced), wallets);
}

fn pending_withdrawal() -> Transaction {
    Transaction {
        id: Uuid::now_v7(),
        kind: TransactionKind::Withdrawal,
        status: TransactionStatus::Pending,
        tx_hash: "0x1".into(),
        amount_micros: 1,
        allocation: None,
        from_wallet: None,
        to_wallet: None,
        from_system: None,
        to_system: None,
        destination_address: None,
        gas_used: None,
        gas_price_wei: None,
        reason: String::new(),
        metadata: serde_json::json!({}),
        request_id: "w-1".into(),
        requested_by: Uuid::now_v7(),
        created_at: now(),
        confirmed_at: None,
        processed_at: None,
        mining_session: None,
        backing_reference: None,
        reverses: None,
        reversed_by: None,
    }
}

#[test]
fn every_applied_command_is_audited_once_with_its_request_id_and_a_refused_one_is_not() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let alices = store.open_wallet(&alice, 10 * AZR);
    let held = store.settle(&[request(&alice, "w-1", withdraw(alices, 4 * AZR))]);
    let withdrawal = settled(&held.outcomes[0]).clone();
    let requests = [
        request(&alice, "w-1", withdraw(alices, 4 * AZR)),
        request(&alice, "w-2", withdraw(alices, 40 * AZR)),
        request(&treasurer, "c-1", confirm(withdrawal.id, None)),
    ];
    let mut confirmed = withdrawal.clone();
    confirmed.status = TransactionStatus::Confirmed;
    let outcomes = vec![
        Ok(withdrawal.clone()),
        Err(Error::PermissionDenied),
        Ok(confirmed.clone()),
    ];

    let events = audit_events(&requests, &outcomes);

    assert_eq!(events.len(), 2);
    let (caller, replayed) = &events[0];
    assert_eq!(caller.user_id, alice.user_id);
    assert_eq!(replayed.resource_type, "transaction");
    assert_eq!(replayed.resource_id, withdrawal.id.to_string());
    assert_eq!(replayed.request_id.as_deref(), Some("w-1"));
    assert_eq!(replayed.old, None);
    assert_eq!(replayed.new.as_ref().unwrap()["status"], "pending");
    let (caller, resolution) = &events[1];
    assert_eq!(caller.user_id, treasurer.user_id);
    assert_eq!(
        resolution.old,
        Some(serde_json::json!({ "id": withdrawal.id, "status": "pending" }))
    );
    assert_eq!(resolution.new.as_ref().unwrap()["status"], "confirmed");
}

fn reverse(transaction_id: Uuid) -> Command {
    Command::Reverse {
        transaction_id,
        note: Note::default(),
    }
}

fn group_span(caller: &Principal, start: usize, len: usize, mode: BatchMode) -> GroupSpan {
    GroupSpan {
        start,
        len,
        mode,
        key: (caller.user_id, format!("batch-{start}")),
        fingerprint: format!("fingerprint-{start}"),
    }
}

#[test]
fn a_reversal_posts_the_originals_entries_negated_once_even_twice_in_one_batch() {
    let mut store = Store::new();
    let (treasurer, alice, bob) = (
        person(Role::Treasurer),
        person(Role::Member),
        person(Role::Member),
    );
    let from = store.open_wallet(&alice, 10 * AZR);
    let to = store.open_wallet(&bob, 0);
    let paid = store.settle(&[request(&alice, "t", transfer(from, to, 4 * AZR))]);
    let original = settled(&paid.outcomes[0]).id;
    let settlement = settle_checked(
        &mut store,
        &[
            request(&treasurer, "r1", reverse(original)),
            request(&treasurer, "r2", reverse(original)),
        ],
    );
    let reversal = settled(&settlement.outcomes[0]);
    assert_eq!(reversal.kind, TransactionKind::Reversal);
    assert_eq!(reversal.reverses, Some(original));
    assert_eq!(
        (reversal.from_wallet, reversal.to_wallet),
        (Some(to), Some(from))
    );
    assert_eq!(
        legs(&settlement),
        [(
            reversal.id,
            Leg {
                from: available(Account::Wallet(to)),
                to: available(Account::Wallet(from)),
                micros: 4 * AZR
            }
        )]
    );
    assert_eq!(
        failed_precondition(&settlement.outcomes[1]),
        "ALREADY_REVERSED"
    );
    assert_eq!((store.available(from), store.available(to)), (10 * AZR, 0));
    // A later batch sees it reversed too; a reversal is never reversed.
    let reversal_id = reversal.id;
    let again = store.settle(&[
        request(&treasurer, "r3", reverse(original)),
        request(&treasurer, "r4", reverse(reversal_id)),
    ]);
    assert_eq!(failed_precondition(&again.outcomes[0]), "ALREADY_REVERSED");
    assert_eq!(failed_precondition(&again.outcomes[1]), "NOT_REVERSIBLE");
}

#[test]
fn a_reversal_is_refused_when_the_recipient_has_spent_the_azr() {
    let mut store = Store::new();
    let (treasurer, alice, bob) = (
        person(Role::Treasurer),
        person(Role::Member),
        person(Role::Member),
    );
    let from = store.open_wallet(&alice, 10 * AZR);
    let to = store.open_wallet(&bob, 0);
    let paid = store.settle(&[request(&alice, "t", transfer(from, to, 4 * AZR))]);
    let original = settled(&paid.outcomes[0]).id;
    store.settle(&[request(&bob, "spend", transfer(to, from, 1))]);
    let refused = store.settle(&[request(&treasurer, "r", reverse(original))]);
    assert_eq!(
        failed_precondition(&refused.outcomes[0]),
        "INSUFFICIENT_FUNDS"
    );
    assert!(refused.created.is_empty() && refused.entries.is_empty());
    assert!(refused.new_keys.is_empty());
}

#[test]
fn a_reversed_mint_returns_every_share_to_issuance() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let wallet = store.open_wallet(&alice, 0);
    let minted = store.settle(&[request(&treasurer, "m", mint(Some(wallet), 100 * AZR))]);
    let original = settled(&minted.outcomes[0]).id;
    let settlement = settle_checked(&mut store, &[request(&treasurer, "r", reverse(original))]);
    let reversal = settled(&settlement.outcomes[0]);
    assert_eq!(reversal.allocation, None);
    assert_eq!(settlement.entries.len(), 4);
    for account in SystemAccount::ALL {
        assert_eq!(store.system(*account), 0, "{account:?}");
    }
    assert_eq!(store.available(wallet), 0);
}

#[test]
fn pending_failed_and_chain_transactions_are_not_reversed_and_an_unknown_one_is_not_found() {
    let mut store = Store::new();
    let (treasurer, alice) = (person(Role::Treasurer), person(Role::Member));
    let wallet = store.open_wallet(&alice, 10 * AZR);
    let held = store.settle(&[request(&alice, "w", withdraw(wallet, AZR))]);
    let pending = settled(&held.outcomes[0]).id;
    let bridged = store.settle(&[request(&treasurer, "d", deposit(wallet, AZR, None, false))]);
    let deposit_id = settled(&bridged.outcomes[0]).id;
    let refused = store.settle(&[
        request(&treasurer, "r1", reverse(pending)),
        request(&treasurer, "r2", reverse(deposit_id)),
        request(&treasurer, "r3", reverse(Uuid::now_v7())),
    ]);
    assert_eq!(failed_precondition(&refused.outcomes[0]), "NOT_CONFIRMED");
    assert_eq!(failed_precondition(&refused.outcomes[1]), "NOT_REVERSIBLE");
    assert!(matches!(
        rejected(&refused.outcomes[2]),
        Error::NotFound { .. }
    ));
}

#[test]
fn staking_moves_available_to_staked_and_back_in_the_owners_wallet_only() {
    let mut store = Store::new();
    let (alice, mallory) = (person(Role::Member), person(Role::Member));
    let wallet = store.open_wallet(&alice, 10 * AZR);
    let other = store.open_wallet(&mallory, 0);
    let staked = settle_checked(
        &mut store,
        &[request(
            &alice,
            "s",
            Command::Stake {
                wallet,
                amount: amount(6 * AZR),
                note: Note::default(),
            },
        )],
    );
    assert_eq!(settled(&staked.outcomes[0]).kind, TransactionKind::Stake);
    assert_eq!(store.balance(wallet).staked, 6 * AZR);
    assert_eq!(store.available(wallet), 4 * AZR);
    // Staked AZR is not spendable.
    let spend = store.settle(&[request(&alice, "t", transfer(wallet, other, 5 * AZR))]);
    assert_eq!(
        failed_precondition(&spend.outcomes[0]),
        "INSUFFICIENT_FUNDS"
    );
    let foreign = store.settle(&[request(
        &mallory,
        "u",
        Command::Unstake {
            wallet,
            amount: amount(AZR),
            note: Note::default(),
        },
    )]);
    assert!(matches!(
        rejected(&foreign.outcomes[0]),
        Error::PermissionDenied
    ));
    let too_much = store.settle(&[request(
        &alice,
        "u1",
        Command::Unstake {
            wallet,
            amount: amount(7 * AZR),
            note: Note::default(),
        },
    )]);
    assert_eq!(
        failed_precondition(&too_much.outcomes[0]),
        "INSUFFICIENT_FUNDS"
    );
    settle_checked(
        &mut store,
        &[request(
            &alice,
            "u2",
            Command::Unstake {
                wallet,
                amount: amount(6 * AZR),
                note: Note::default(),
            },
        )],
    );
    assert_eq!(
        store.balance(wallet),
        Balance {
            available: 10 * AZR,
            ..Balance::default()
        }
    );
}

#[test]
fn an_atomic_group_that_fails_leaves_the_batch_as_before_it() {
    let mut store = Store::new();
    let alice = person(Role::Member);
    let bob = person(Role::Member);
    let from = store.open_wallet(&alice, 10 * AZR);
    let to = store.open_wallet(&bob, 0);
    let requests = [
        request(&alice, "before", transfer(from, to, AZR)),
        request(&alice, "g-0", transfer(from, to, 4 * AZR)),
        request(&alice, "g-1", transfer(from, to, 6 * AZR)),
        request(&alice, "after", transfer(from, to, 9 * AZR)),
    ];
    let spans = [group_span(&alice, 1, 2, BatchMode::Atomic)];
    let settlement = settle_groups(store.inputs(&requests), &policy(), &requests, &spans, now());
    // 10 - 1 = 9 left: the group's 4 + 6 do not fit, so neither posts, and
    // the command after it still sees the 9.
    assert!(matches!(
        &settlement.groups[..],
        [GroupSettled::Aborted { index: 1, .. }]
    ));
    settled(&settlement.outcomes[0]);
    rejected(&settlement.outcomes[1]);
    rejected(&settlement.outcomes[2]);
    settled(&settlement.outcomes[3]);
    assert_eq!(settlement.created.len(), 2);
    assert_eq!(settlement.entries.len(), 2);
    let keys: Vec<&str> = settlement
        .new_keys
        .iter()
        .map(|key| key.request_id.as_str())
        .collect();
    assert_eq!(keys, ["before", "after"]);
    assert!(settlement.new_groups.is_empty());
    let available_of = |id: Uuid| {
        settlement
            .wallet_balances
            .iter()
            .find(|(wallet, _)| *wallet == id)
            .map(|(_, balance)| balance.available)
    };
    assert_eq!(available_of(from), Some(0));
    assert_eq!(available_of(to), Some(10 * AZR));
}

#[test]
fn an_independent_group_keeps_what_succeeded_and_records_the_rest() {
    let mut store = Store::new();
    let alice = person(Role::Member);
    let bob = person(Role::Member);
    let from = store.open_wallet(&alice, 5 * AZR);
    let to = store.open_wallet(&bob, 0);
    let requests = [
        request(&alice, "g-0", transfer(from, to, 4 * AZR)),
        request(&alice, "g-1", transfer(from, to, 4 * AZR)),
        request(&alice, "g-2", transfer(from, to, AZR)),
    ];
    let spans = [group_span(&alice, 0, 3, BatchMode::Independent)];
    let settlement = settle_groups(store.inputs(&requests), &policy(), &requests, &spans, now());
    let [GroupSettled::Results(results)] = &settlement.groups[..] else {
        panic!("expected results, got {:?}", settlement.groups);
    };
    assert!(matches!(results[0], StoredItem::Applied(_)));
    assert!(
        matches!(&results[1], StoredItem::Refused(failure) if failure.reason == "INSUFFICIENT_FUNDS")
    );
    assert!(matches!(results[2], StoredItem::Applied(_)));
    assert_eq!(settlement.new_groups.len(), 1);
    assert_eq!(settlement.created.len(), 2);
}
