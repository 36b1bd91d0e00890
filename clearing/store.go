package clearing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/storecheck"
)

// Key layout of the clearing store. Everything but the balance and meta
// records is appended once and never rewritten; balances are a materialised
// view of the transfers, updated in the same transaction.
//
//	d<terminal>\x00<seq u64>  dedup: digest[32] | status u8
//	w<terminal>               applied-sequence watermark u64
//	e<event id>               event record (JSON)
//	a<apply index u64>        digest[32] | event id[16] in apply order
//	t<transfer seq u64>       transfer (JSON), the journal
//	b<account>                balance: debits i64 | credits i64
//	p<batch id u64>           settlement batch (JSON)
//	c<batch id u64>           ledger commit receipt of a batch (JSON)
//	m<name>                   counters: next apply index, next transfer, period
//	n<deny key[16]>           deny list entry (JSON: media, reason, since), deleted when unlisted (deny.go)
//	mdeny-version             deny list version u64 | listed u8 | key[16] of its last change
const (
	pDedup     = 'd'
	pWatermark = 'w'
	pEvent     = 'e'
	pApplied   = 'a'
	pTransfer  = 't'
	pBalance   = 'b'
	pBatch     = 'p'
	pCommit    = 'c'
	pMeta      = 'm'
)

// Dedup statuses: both mean the terminal's sequence number is used up.
const (
	statusApplied     = 1
	statusQuarantined = 2
)

var (
	metaNextApply    = []byte("mnext-apply")
	metaNextTransfer = []byte("mnext-transfer")
	metaPeriod       = []byte("mperiod")
)

// Store is clearing's durable state in Badger.
type Store struct {
	// log says what the store notices itself (a commit the chain moved).
	log *slog.Logger
	db  *badger.DB
	// intents groups the charge intents billing workers hold, written
	// under intentWrite (payments.go).
	intents     groupCommit[intentHold]
	intentWrite sync.Mutex
	pricing     atomic.Pointer[Pricing] // nil: flat fares
	// cache holds hot rider days for the applying goroutine (nil: none).
	cache *riderCache
	// seqs is the applying goroutine's index of the highest sequence per
	// terminal (seqindex.go).
	seqs seqIndex
	// signedByTerminal checks an event's signature against its terminal's
	// registered key before the apply path refuses it for good (nil: every
	// event reaching the store was verified by clearing itself; with
	// verifier partitions a verifier vouched, and a forgery must not use up
	// a genuine event's sequence).
	signedByTerminal func(*fare.Signed) bool
	// balances are the applying goroutine's copy of the journal balances
	// it wrote or read (balancecache.go).
	balances balanceCache
	// open is the applying goroutine's copy of the open period's leaves
	// and nets (openperiod.go).
	open openPeriod
	// enrolled is every rider with an enrolment record (enrol.go), read
	// once: most riders have none and must not cost pricing a scan.
	enrolledMu     sync.Mutex
	enrolled       map[string]bool
	enrolledLoaded bool
	// retryDue is when the earliest debt retry falls due (unix ns; 0:
	// unknown, read the billing states), so the collector does not read
	// every rider's billing state on every look (payments.go).
	retryDue atomic.Int64
	// billedBefore is the fare day (fares.Date) before which the collector
	// has begun billing days: a late tap changing one puts it back in the
	// index of days to bill (riderBatch.billedBefore).
	billedBefore atomic.Int32
	// dueFrom is the index key (pOpenDay) where the collector's next read
	// of the days to bill starts (nil: the start), so each round goes on
	// where the last stopped: riders whose issuers hang, billed again
	// and again from the head, kept the riders after the first chunk
	// from ever being read (dueRiders).
	dueMu   sync.Mutex
	dueFrom []byte
	// appliedN is the apply index after the last committed batch (how many
	// events the store has applied), for the owner record (owner.go).
	appliedN atomic.Uint64
}

// OpenStore opens (creating) the clearing store in dir. Writes are synced:
// a commit that returns is on disk, which is what lets clearing ack
// JetStream after it.
func OpenStore(dir string, log *slog.Logger) (*Store, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{log}).
		WithNumVersionsToKeep(1).
		// Each key has one writer that reads it (the apply path, or a
		// gate-list or enrolment queue for its own keys), so no two
		// transactions race on a key; and the apply path opens the next
		// batch's transaction before the previous one commits, which
		// conflict detection would refuse (see batchTxn).
		WithDetectConflicts(false).
		// A damaged block is an error naming its table, never a panic
		// (Badger parses a block it does not check, and a flipped bit
		// there crashed clearing at start); crc32c of a block read from
		// disk is cheap beside the read.
		WithChecksumVerificationMode(options.OnBlockRead)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkStoreTables(dir, false); err != nil {
		return nil, err
	}
	if !fare.DirLocked(dir) {
		// Log files Badger created and never wrote (a power cut right
		// after) hold nothing, and its open fails on them once.
		removed, err := storecheck.RemoveEmptyLogs(dir)
		if err != nil {
			return nil, fmt.Errorf("open clearing store %s: %w", dir, err)
		}
		if len(removed) > 0 {
			log.Warn("clearing store log files created and never written removed (empty: a power cut right after the store made them); they held nothing", "files", removed)
		}
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open clearing store %s: %w", dir, err)
	}
	return &Store{db: db, log: log}, nil
}

// checkStoreTables checks every table of the store in dir against its
// checksums before it is opened. Badger parses what it does not check: a
// flipped bit in a table panicked clearing and `ledger audit`, or hid
// records from a read (an outside test saw a start find no concession
// enrolments in a damaged block and purge them from every gate, and an
// audit call such a store clean). Checking reads every table once (about
// 300 MB/s here: BENCHMARKS.md).
func checkStoreTables(dir string, readOnly bool) error {
	if fare.DirLocked(dir) {
		return nil // another process has it: the open says so, and its tables move
	}
	if err := storecheck.Store(badger.DefaultOptions(dir).WithReadOnly(readOnly)); errors.Is(err, storecheck.ErrNoAccess) {
		return fmt.Errorf("clearing store %s: %w", dir, err)
	} else if err != nil {
		return fmt.Errorf("clearing store %s is damaged: %w: restore it from a backup (the chain still holds every anchored root)", dir, err)
	}
	return nil
}

// StoreDir is where clearing keeps its store in its data dir.
func StoreDir(dataDir string) string { return filepath.Join(dataDir, "store") }

// HasStore reports whether dir holds a store (Badger's MANIFEST): a data
// dir that does was made by a clearing before, with its keys.
func HasStore(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "MANIFEST"))
	return err == nil
}

// StoreInUse reports whether a running process holds the store in dataDir
// (Badger flocks the store's directory while it has it open).
func StoreInUse(dataDir string) bool { return fare.DirLocked(StoreDir(dataDir)) }

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

func u64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func keyU64(prefix byte, v uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], v)
	return k
}

func keyStr(prefix byte, s string) []byte {
	k := make([]byte, 1+len(s))
	k[0] = prefix
	copy(k[1:], s)
	return k
}

func dedupKey(terminal string, seq uint64) []byte {
	k := make([]byte, 0, 1+len(terminal)+1+8)
	k = append(k, pDedup)
	k = append(k, terminal...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func eventKey(id fare.EventID) []byte {
	k := make([]byte, 17)
	k[0] = pEvent
	copy(k[1:], id[:])
	return k
}

// EventRecord is an applied event as clearing stores it. Fare is what the
// event charged its rider (a credit when negative); Postings say which
// operators it went to, nil meaning all of it to the event's own operator
// (the flat fare).
type EventRecord struct {
	ApplyIndex uint64      `json:"apply_index"`
	Fare       fare.Amount `json:"fare"`
	Postings   []Posting   `json:"postings,omitempty"`
	// Unpriced says why live pricing could not price this accepted tap
	// (to review): the feed refused the tap (applied at zero), or the
	// journey it belongs to has no fare in the feed (the journey is
	// charged leg by leg where the feed knows a leg's fare, a leg's own
	// alone or its entry's maximum, else nothing: the tap's postings may
	// then credit back what its earlier taps were charged). Empty when it
	// was priced.
	Unpriced  string    `json:"unpriced,omitempty"`
	AppliedAt time.Time `json:"applied_at"`
	Raw       []byte    `json:"raw"`
}

// Posting is an event's effect on one operator: Amount is credited to the
// operator and debited to the rider (the reverse when negative).
type Posting struct {
	Operator string      `json:"operator"`
	Amount   fare.Amount `json:"amount"`
}

// PostingsOf returns r's postings; a flat-fare record's single posting goes
// to operator, the event's own.
func (r *EventRecord) PostingsOf(operator string) []Posting {
	if r.Postings != nil {
		return r.Postings
	}
	return []Posting{{Operator: operator, Amount: r.Fare}}
}

// Transfer is one double-entry posting: Amount moves from the debit account
// to the credit account. Every transfer balances by construction; the
// journal is the ordered list of transfers.
type Transfer struct {
	Seq        uint64       `json:"seq"`
	ID         fare.EventID `json:"id"` // the event that caused it: one transfer per event
	Debit      string       `json:"debit"`
	Credit     string       `json:"credit"`
	Amount     fare.Amount  `json:"amount"`
	Operator   string       `json:"operator"`
	ApplyIndex uint64       `json:"apply_index"`
	At         time.Time    `json:"at"`
}

// OperatorNet is what t does to its operator's revenue: its amount when
// it credits the operator, minus it when it debits the operator (a refund).
func (t Transfer) OperatorNet() fare.Amount {
	if t.Debit == OperatorAccount(t.Operator) {
		return -t.Amount
	}
	return t.Amount
}

// Balance is an account's posted totals. Balance = Credits - Debits.
type Balance struct {
	Account string      `json:"account"`
	Debits  fare.Amount `json:"debits"`
	Credits fare.Amount `json:"credits"`
}

// Net is credits minus debits.
func (b Balance) Net() fare.Amount { return b.Credits - b.Debits }

// OperatorAccount names an operator's journal account; RiderAccount names a
// rider's.
func OperatorAccount(op string) string { return "operator/" + op }

func getBalance(txn *badger.Txn, account string) (Balance, error) {
	item, err := txn.Get(keyStr(pBalance, account))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Balance{Account: account}, nil
	}
	if err != nil {
		return Balance{Account: account}, err
	}
	return itemBalance(item)
}

// itemBalance decodes the balance record an iterator or Get is positioned on.
func itemBalance(item *badger.Item) (Balance, error) {
	b := Balance{Account: string(item.Key()[1:])}
	err := item.Value(func(v []byte) error { return decodeBalance(&b, v) })
	return b, err
}

func decodeBalance(b *Balance, v []byte) error {
	if len(v) != 16 {
		return fmt.Errorf("balance %s: corrupt record of %d bytes", b.Account, len(v))
	}
	b.Debits = fare.Amount(u64(v[:8]))
	b.Credits = fare.Amount(u64(v[8:]))
	return nil
}

func encodeBalance(b Balance) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v[:8], uint64(b.Debits))
	binary.BigEndian.PutUint64(v[8:], uint64(b.Credits))
	return v
}

func putBalance(txn *badger.Txn, b Balance) error {
	return txn.Set(keyStr(pBalance, b.Account), encodeBalance(b))
}

// Balance returns one account's balance.
func (s *Store) Balance(account string) (Balance, error) {
	var b Balance
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		b, err = getBalance(txn, account)
		return err
	})
	return b, err
}

// FindBalance returns the account's balance and whether the journal has
// ever posted to it.
func (s *Store) FindBalance(account string) (Balance, bool, error) {
	b := Balance{Account: account}
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyStr(pBalance, account))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		b, err = itemBalance(item)
		return err
	})
	return b, found, err
}

// Balances returns the accounts whose names start with prefix, at most limit
// of them after the account named after (exclusive), in name order.
func (s *Store) Balances(prefix, after string, limit int) ([]Balance, error) {
	var out []Balance
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: keyStr(pBalance, prefix)})
		defer it.Close()
		start := keyStr(pBalance, prefix)
		if after != "" {
			start = append(keyStr(pBalance, after), 0)
		}
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			b, err := itemBalance(it.Item())
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	return out, err
}

// Audit is what a scan of the whole store finds about the journal.
type Audit struct {
	Transfers int `json:"transfers"`
	// Imbalance is the sum of every stored account balance: zero when every
	// posting balanced.
	Imbalance fare.Amount `json:"imbalance"`
	// Mismatches lists accounts whose stored balance differs from the sum of
	// their postings in the journal.
	Mismatches []string `json:"mismatches,omitempty"`
}

// eachTransfer calls fn with every journal transfer, in order.
func eachTransfer(txn *badger.Txn, fn func(*Transfer)) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 500, Prefix: []byte{pTransfer}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var t Transfer
		if err := it.Item().Value(t.UnmarshalBinary); err != nil {
			return fmt.Errorf("journal transfer %d: %w", u64(it.Item().Key()[1:]), err)
		}
		fn(&t)
	}
	return nil
}

// AuditJournal recomputes every account from the journal alone and compares
// it with the stored balances.
func (s *Store) AuditJournal() (Audit, error) {
	var a Audit
	fromJournal := make(map[string]fare.Amount)
	err := s.db.View(func(txn *badger.Txn) error {
		err := eachTransfer(txn, func(t *Transfer) {
			fromJournal[t.Debit] -= t.Amount
			fromJournal[t.Credit] += t.Amount
			a.Transfers++
		})
		if err != nil {
			return err
		}
		bit := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 500, Prefix: []byte{pBalance}})
		defer bit.Close()
		seen := make(map[string]bool, len(fromJournal))
		for bit.Rewind(); bit.Valid(); bit.Next() {
			b, err := itemBalance(bit.Item())
			if err != nil {
				return err
			}
			acct := b.Account
			a.Imbalance += b.Net()
			seen[acct] = true
			if b.Net() != fromJournal[acct] {
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("%s: stored %d, journal %d", acct, b.Net(), fromJournal[acct]))
			}
		}
		for acct, v := range fromJournal {
			if !seen[acct] && v != 0 {
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("%s: no stored balance, journal %d", acct, v))
			}
		}
		return nil
	})
	return a, err
}

// Event returns an applied event's record.
func (s *Store) Event(id fare.EventID) (EventRecord, error) {
	var r EventRecord
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(eventKey(id))
		if err != nil {
			return err
		}
		return item.Value(r.UnmarshalBinary)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return r, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	return r, err
}

// appliedEvent reads the record of an applied event and decodes the
// signed event it holds.
func appliedEvent(txn *badger.Txn, id fare.EventID) (EventRecord, *fare.Signed, error) {
	var rec EventRecord
	item, err := txn.Get(eventKey(id))
	if err != nil {
		return rec, nil, fmt.Errorf("event %s: %w", id, err)
	}
	if err := item.Value(rec.UnmarshalBinary); err != nil {
		return rec, nil, fmt.Errorf("event %s: %w", id, err)
	}
	sig, err := fare.Decode(rec.Raw)
	if err != nil {
		return rec, nil, fmt.Errorf("event %s: %w", id, err)
	}
	return rec, sig, nil
}

// ErrNotFound is returned for ids the store does not hold.
var ErrNotFound = errors.New("not found")

// applied returns the applied events with apply index in [from, to), in
// apply order: the contents of a settlement batch.
func (s *Store) applied(from, to uint64) ([]appliedEntry, error) {
	out := make([]appliedEntry, 0, to-from)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 1000, Prefix: []byte{pApplied}})
		defer it.Close()
		for it.Seek(keyU64(pApplied, from)); it.Valid(); it.Next() {
			idx := u64(it.Item().Key()[1:])
			if idx >= to {
				break
			}
			if want := from + uint64(len(out)); idx != want {
				return fmt.Errorf("apply index %d missing", want)
			}
			var a appliedEntry
			err := it.Item().Value(func(v []byte) error {
				var err error
				a, err = parseApplied(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("apply index %d: %w", idx, err)
			}
			out = append(out, a)
		}
		return nil
	})
	if err == nil && uint64(len(out)) != to-from {
		err = fmt.Errorf("applied events [%d,%d): found %d", from, to, len(out))
	}
	return out, err
}

// Watermark returns a terminal's applied-sequence watermark: every sequence
// up to it has been durably applied or quarantined.
func (s *Store) Watermark(terminal string) (uint64, error) {
	var w uint64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		w, err = getU64(txn, keyStr(pWatermark, terminal))
		return err
	})
	return w, err
}

// Watermarks returns every terminal's watermark.
func (s *Store) Watermarks() (map[string]uint64, error) {
	out := make(map[string]uint64)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pWatermark}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error { out[string(it.Item().Key()[1:])] = u64(v); return nil })
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// HighestSequence returns the highest sequence clearing holds for terminal,
// so gaps (highest > watermark) can be reported.
func (s *Store) HighestSequence(terminal string) (uint64, error) {
	var hi uint64
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := append([]byte{pDedup}, terminal...)
		prefix = append(prefix, 0)
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
		defer it.Close()
		it.Seek(append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		if it.Valid() {
			hi = u64(it.Item().Key()[len(prefix):])
		}
		return nil
	})
	return hi, err
}

func getU64(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) (err error) { v, err = decodeU64(key, b); return err })
	return v, err
}

// decodeU64 reads a counter's value.
func decodeU64(key, b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("key %q: corrupt u64 of %d bytes", key, len(b))
	}
	return u64(b), nil
}

func setU64(txn *badger.Txn, key []byte, v uint64) error {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return txn.Set(key, b)
}

// metaCurrency is the currency the store's amounts are in: the registry's
// at the store's first successful start with one (a store of an earlier build: at its
// first start on this one). Amounts are minor units of no stated currency,
// so a registry naming another would show every one of them as money it is
// not (an outside review: an audit given a JPY registry printed a EUR
// store's 934.55 as 93455 JPY and called it clean).
var metaCurrency = []byte("mcurrency")

// metaPricingRules lists which pricing rules (journeys.RulesVersion) priced
// the store's events: (version u16, first apply index u64) pairs, one
// appended at each successful start whose build prices by other rules than
// the last. Events before the first pair were priced by a build that kept
// no such list (rules 2 or earlier).
var metaPricingRules = []byte("mpricingrules")

// BindPricingRules records that the events from apply index from on are
// priced under rules version (journeys.RulesVersion), unless the store
// already says that of its latest events.
func (s *Store) BindPricingRules(version uint16, from uint64) error {
	return s.db.Update(func(txn *badger.Txn) error {
		list, err := pricingRulesOf(txn)
		if err != nil {
			return err
		}
		if n := len(list); n > 0 && binary.BigEndian.Uint16(list[n-10:]) == version {
			return nil
		}
		list = binary.BigEndian.AppendUint16(list, version)
		list = binary.BigEndian.AppendUint64(list, from)
		return txn.Set(metaPricingRules, list)
	})
}

// pricingRulesSince returns the apply index from which on every event was
// priced under rules version, or math.MaxUint64 where the store's latest
// events were priced under other rules (or it records none).
func pricingRulesSince(txn *badger.Txn, version uint16) (uint64, error) {
	list, err := pricingRulesOf(txn)
	if err != nil || len(list) == 0 {
		return math.MaxUint64, err
	}
	n := len(list)
	if binary.BigEndian.Uint16(list[n-10:]) != version {
		return math.MaxUint64, nil
	}
	return binary.BigEndian.Uint64(list[n-8:]), nil
}

// rulesAt says which pricing rules the list (pricingRulesOf) has pricing
// the event at apply index idx.
func rulesAt(list []byte, idx uint64) string {
	at := "priced by a build that recorded no pricing rules (rules 2 or earlier)"
	for i := 0; i+10 <= len(list); i += 10 {
		if binary.BigEndian.Uint64(list[i+2:]) > idx {
			break
		}
		at = fmt.Sprintf("priced under pricing rules %d", binary.BigEndian.Uint16(list[i:]))
	}
	return at
}

func pricingRulesOf(txn *badger.Txn) ([]byte, error) {
	list, err := getBytes(txn, metaPricingRules)
	if err == nil && len(list)%10 != 0 {
		err = fmt.Errorf("key %q: corrupt list of pricing rules of %d bytes", metaPricingRules, len(list))
	}
	return list, err
}

// BindCurrency records cur as the store's currency if it has none, and
// refuses another.
func (s *Store) BindCurrency(cur string) error {
	return s.db.Update(func(txn *badger.Txn) error {
		had, err := currencyOf(txn)
		switch {
		case err != nil:
			return err
		case had == "":
			return txn.Set(metaCurrency, []byte(cur))
		case had != cur:
			return currencyMismatch(had, cur)
		}
		return nil
	})
}

// CheckCurrency refuses cur if the store records another currency.
func (s *Store) CheckCurrency(cur string) error {
	had, err := s.Currency()
	if err != nil || had == "" || had == cur {
		return err
	}
	return currencyMismatch(had, cur)
}

func currencyMismatch(had, cur string) error {
	return fmt.Errorf("%w: the store's amounts are in %s (its registry's at its first start), the registry says %s: a store settles in one currency (a city changing currency starts a new data dir)", ErrCurrencyMismatch, had, cur)
}

// ErrCurrencyMismatch is a registry naming another currency than the
// store's.
var ErrCurrencyMismatch = errors.New("currency mismatch")

// Currency is the store's currency (BindCurrency), "" where none is
// recorded (a store no clearing of this build has started on).
func (s *Store) Currency() (string, error) {
	var cur string
	err := s.db.View(func(txn *badger.Txn) (err error) { cur, err = currencyOf(txn); return err })
	return cur, err
}

func currencyOf(txn *badger.Txn) (string, error) { return getString(txn, metaCurrency) }

// getString is key's value as a string, "" where there is none.
func getString(txn *badger.Txn, key []byte) (string, error) {
	v, err := getBytes(txn, key)
	return string(v), err
}

// getBytes is a copy of key's value, nil where there is none.
func getBytes(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// badgerLogger routes Badger's logs to slog, dropping its chatty info level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Infof(string, ...any)  {}
func (b badgerLogger) Debugf(string, ...any) {}

// AppliedEventIDs lists every applied event id in apply order, for audits.
func (s *Store) AppliedEventIDs() ([]fare.EventID, error) {
	var out []fare.EventID
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 1000, Prefix: []byte{pApplied}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				a, err := parseApplied(v)
				out = append(out, a.id)
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// value returns a copy of the value under key (badger.ErrKeyNotFound when
// there is none), read in a transaction of its own.
func (s *Store) value(key []byte) ([]byte, error) {
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	return v, err
}
