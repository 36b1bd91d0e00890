// Package terminal is the agent on each turnstile. It decides a tap locally,
// within the gate's time budget and without the network if need be, writes
// the signed fare event to a durable Badger outbox before the gate opens,
// and streams the outbox to NATS JetStream until clearing confirms, with a
// signed confirmation, that the event is durably applied or rejected for
// good. Rejected events move to a dead-letter area of the same store.
package terminal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/storecheck"
)

// Config configures a terminal.
type Config struct {
	// ID, Operator and Stop are the terminal's registration on the ledger
	// (fare.ValidateID tokens): every event names them, and NATS admits
	// the terminal's events only on its operator's and id's subject. The
	// outbox is bound to ID and, once clearing applied one of its events,
	// to Operator; Stop may change (a gate moved).
	ID       string
	Operator string
	Stop     string
	// Key signs every event; the outbox is bound to it.
	Key ed25519.PrivateKey
	// DataDir holds the Badger outbox.
	DataDir string
	// NATSURL is the clearing house's NATS server or cluster. The terminal
	// starts and takes taps without it. It connects as the NATS user derived
	// from Key (fare.NewNATSIdentity).
	NATSURL string
	// NATSCA is a PEM file of the CA that signed the NATS server's TLS
	// certificate; set, the connection must be TLS.
	NATSCA string
	// ClearingKeys are the clearing keys whose confirmations the terminal
	// acts on (several while a key is rotated). Required: without them the
	// terminal could never drop a confirmed event.
	ClearingKeys []ed25519.PublicKey
	// Metrics, if set, registers the terminal's Prometheus metrics (with a
	// terminal label).
	Metrics prometheus.Registerer
	// Faces, if set, is the gate's camera: face taps (TapFace) and the 1:1
	// check of a concession card's holder. Without it a face tap is refused.
	Faces FaceMatcher
	// FaceHead, if set, returns the signed head the gate's face gallery
	// follows (nil: none yet; cmd wires the gallery feed's SignedHead). It
	// is shown to clearing on each watermark request (fare.FaceHeadHeader),
	// so a clearing restored from an older backup numbers its galleries
	// past it rather than have the gate refuse its heads as older.
	FaceHead func() []byte
	// Deny is a static seed of card tokens refused at the gate, beside
	// clearing's deny list, which the terminal follows (its JetStream
	// key-value bucket, fare.DenyBucket) and keeps in its store (deny.go).
	Deny DenyList
	// ResendAfter is how long an unconfirmed event waits before the
	// terminal sends again from its watermark; it doubles up to a minute
	// while clearing makes no progress. Default 3s.
	ResendAfter time.Duration
	// ListsDownWarn is how long a connected gate may go without following
	// its gate lists' feeds (clearing refusing or not serving its
	// requests) before it warns. Default 30s.
	ListsDownWarn time.Duration
	// MinFreeBytes is the free space the outbox's file system must keep:
	// below it taps are refused with ErrDiskFull; below 8 MiB (or it, if
	// smaller) the outbox is not opened (diskroom.go). 0:
	// DefaultMinFreeBytes, or a quarter of a smaller disk (at least storeRoom); negative: no
	// check.
	MinFreeBytes int64
	// AcceptLostTaps opens an outbox whose store ends before its
	// high-water mark (ErrOutboxLost) as it is, once someone has decided
	// the lost taps are gone: the loss is logged, the taps it still holds
	// are sent, and new taps are numbered after them (where clearing holds
	// a lost tap under one of those sequences, the new tap is signed again
	// under the next free one, as for a restored backup). For one start:
	// leave it unset afterwards.
	AcceptLostTaps bool
	// Logger receives the terminal's log (default slog.Default()).
	Logger *slog.Logger
	// Now is the gate's own clock (default time.Now), which stamps taps
	// while clearing's is not followed; the disk checks, backoffs and
	// timeouts keep the process's clock.
	Now func() time.Time
}

// DenyList answers whether a card token is refused.
type DenyList interface {
	// Denied reports whether the card token is on the list.
	Denied(token string) bool
}

// TokenSet is a DenyList held in memory.
type TokenSet map[string]struct{}

// Denied reports whether token is in the set.
func (s TokenSet) Denied(token string) bool { _, ok := s[token]; return ok }

// Tap is what the gate's reader saw.
type Tap struct {
	Gate      string
	Direction fare.Direction
	Media     fare.MediaKind
	Token     string // card token, or the subject id biometrics matched
	// RiderCategory is what the reader claims; the gate does not use it:
	// the event carries the category the medium's enrolment gives (the
	// terminal's copy of clearing's enrolments; see deny.go).
	RiderCategory string
	Time          time.Time // zero: the terminal's clock
	// Frames are the camera's frames of whoever presents a card at a
	// camera gate: a concession card whose holder's face the gate holds is
	// accepted only if they show that holder (1:1, see verifyHolder).
	Frames [][]byte

	face *faceOutcome // what the face matcher said, before the decision
}

// Terminal is one running turnstile agent.
type Terminal struct {
	cfg Config
	log *slog.Logger
	db  *badger.DB

	taps chan tapReq
	// writerDone is closed when the outbox writer has stopped: a request
	// still queued then was never written.
	writerDone chan struct{}
	written    chan struct{} // wakes the sender after an outbox write
	marks      chan []byte   // signed confirmations announced by clearing
	stop       chan struct{}
	wg         sync.WaitGroup

	lastSeq atomic.Uint64 // highest sequence written to the outbox
	hw      *highWater    // lastSeq's record beside the store
	// seqMu keeps the outbox writer and a renumbering (anchor.go) apart.
	seqMu      sync.Mutex
	unanchored atomic.Bool // a new outbox that has not heard from clearing (anchor.go)
	// rangeChecked: clearing confirms this outbox with range digests, and
	// nothing without one is taken (keyRangeChecked).
	rangeChecked atomic.Bool
	confirmed    atomic.Uint64 // clearing's watermark as last seen
	published    atomic.Uint64
	probes       atomic.Uint64 // resend rounds that sent one event only, clearing silent
	refused      atomic.Uint64 // confirmations refused: untrusted, malformed, not ours, not matching
	rejected     atomic.Uint64 // events clearing rejected, moved to the dead-letter area
	renumbered   atomic.Uint64 // events signed again, clearing holding another under their sequence (resign.go)
	// rebasing: a renumbering (anchor.go) failed part way; until it is
	// finished no tap is numbered (seqMu).
	rebasing atomic.Bool
	// operatorApplied: the store records that clearing applied events
	// naming this gate's operator (keyOperatorApplied).
	operatorApplied atomic.Bool
	// skipFrom and skipTo are the outbox's pending skip (resign.go): the
	// sequences (from, to] are clearing's record of another unit's or an
	// older life's events, and hold none of this outbox's. 0: none.
	skipFrom, skipTo atomic.Uint64
	closeOnce        sync.Once
	// rejectedGate says why clearing rejected the newest confirmed tap
	// for the gate's own sake (revoked, wrong stop or operator): every
	// tap it takes is refused the same way (nil: its newest was not).
	rejectedGate atomic.Pointer[string]
	// publishRefused says why the server refused the gate's own events
	// subject (a --operator other than the one the ledger registered the
	// terminal under); cleared when clearing confirms a tap.
	publishRefused atomic.Pointer[string]
	runs           fare.Runs // the Run calls Close stops and waits for

	keysMu    sync.Mutex          // guards cfg.ClearingKeys, learnt and retired against other goroutines' readers
	learnt    []ed25519.PublicKey // keys learnt from rotations (stored)
	retired   []ed25519.PublicKey // keys a rotation retired (stored)
	refusedBy *prometheus.CounterVec
	refusals  *fare.Tally
	// diskLog says why the gate refuses taps, or leaves a write for later,
	// while its disk is (nearly) full.
	diskLog *fare.Tally
	nats    *fare.NATSIdentity
	// corrupt counts outbox entries found not to verify with the
	// terminal's own key when about to be sent (a damaged disk).
	corrupt  prometheus.Counter
	corruptN atomic.Uint64
	room     *diskRoom // the outbox's disk margin
	// For the health gauges (health.go): the NATS connection's state, when
	// a confirmation was last recorded (Unix ns), taps refused for space.
	natsUp      atomic.Bool
	confirmedAt atomic.Int64
	// clockOffset is the gate's clock less clearing's, in nanoseconds, as
	// the last answer to its own request showed (ClockOffset).
	clockOffset atomic.Int64
	// follow is clearing's clock as the gate follows it (tapClock,
	// followClock); nil: the gate's own clock.
	follow atomic.Pointer[clockFollow]
	// kept is the gate's own clock as an answer found it (clockAnchor):
	// what readClock measures clearing's clock against; nil: no answer
	// taken yet since the gate started.
	kept atomic.Pointer[clockAnchor]
	// clockJumped: a tap found the gate's clock moved off the one kept
	// since the last answer (tapClock); the sender asks clearing at once.
	clockJumped atomic.Bool
	// reconnected: the connection to NATS came back, perhaps to a clearing
	// restarted on another clock; the sender asks clearing at once, before
	// the next tap is stamped, not at its next 10-minute refresh.
	reconnected atomic.Bool
	// watchClock: the gate's clock is the system's (Config.Now unset), so
	// its moves against the monotonic clock are watched (tapClock). A
	// clock a simulation runs faster than time moves at every tap.
	watchClock  bool
	diskRefused prometheus.Counter
	collectors  []prometheus.Collector // registered in Metrics; unregistered by Close

	deny      denyCopy      // clearing's gate lists (deny list, enrolments) as stored here
	synced    chan struct{} // closed once both gate lists were read whole from clearing's buckets
	listsLive atomic.Bool   // both gate lists' feeds are being followed now
	// listsLostAt (Unix nanoseconds) is when the gate last followed both
	// feeds, or its start if it has not since: how stale its copy may be
	// while listsLive is false (gate_lists_stale_seconds).
	listsLostAt   atomic.Int64
	syncOnce      sync.Once
	denyRefused   map[string]*atomic.Uint64 // by reason; the map is fixed at Open
	denyRefusedBy *prometheus.CounterVec
	denyRefusals  *fare.Tally

	// commitTxn commits the writer's transaction and those of the
	// outbox's sequence records (update) (Commit; tests inject a disk's
	// error). A failed commit of the writer's refuses the taps in it:
	// counted in commitFailed, said in the log (commitLog, summarised)
	// and by Ready (commitFault, nil once a commit succeeds again).
	commitTxn func(*badger.Txn) error
	// undoAbove (seqMu) is the highest sequence a failed commit may have
	// left readable in the store (Badger puts a transaction's entries in
	// its memtable before it syncs them: a failed sync leaves them there,
	// to be flushed at the next close). Taps the gate refused must never
	// come back as taken, charged after the rider was turned away (an
	// outside review): undoFailedCommit deletes them, and nothing is
	// numbered until it has.
	undoAbove    uint64
	commitFailed prometheus.Counter
	commitLog    *fare.Tally
	commitFault  atomic.Pointer[commitFault]
	// closeWait bounds how long Close waits for the store (storeCloseWait).
	closeWait time.Duration
}

// commitFault is the outbox's commits failing: since when, the last error.
type commitFault struct {
	since time.Time
	err   string
	n     atomic.Uint64 // commits failed since
}

// storeCloseWait bounds how long Close waits for the outbox's store: Badger
// retries for ever a memtable flush its disk refuses (one turned
// read-only), and an outside test saw a gate told to stop hang so. What
// the outbox took is synced already (each commit is), and the next start
// copies the store aside and repairs it.
const storeCloseWait = 20 * time.Second

type tapReq struct {
	// ctx is the caller's: a request whose ctx ended before the writer
	// numbered it is not written.
	ctx   context.Context
	tap   Tap
	reply chan tapResult
	// state is tapQueued until the writer claims the request to number it
	// (tapClaimed) or its caller gives up waiting first (tapAbandoned):
	// the caller's deadline holds while the writer is held up (a
	// renumbering, a slow disk), and a tap it claimed is answered.
	state *atomic.Int32
}

// tapReq states.
const (
	tapQueued int32 = iota
	tapClaimed
	tapAbandoned
)

type tapResult struct {
	ev  fare.Event
	err error
}

// Key layout of the terminal's store:
//
//	o<seq u64>              outbox: the signed event, until clearing confirms it
//	x<seq u64>              dead letter: an event clearing rejected (JSON DeadLetter)
//	n<deny key[16]>         a medium's deny-list entry (fare.DenyHash): version u64 | listed u8 (empty: listed, from before versions)
//	g<deny key[16]>         a medium's enrolment entry: clearing's signed fare.GateEntry
//	mlast-seq               highest sequence used u64
//	mconfirmed              clearing's confirmed watermark u64
//	mdeny-version           version of the deny-list copy's head u64, written after its entries
//	menrol-version          version of the enrolments copy's head u64, written after its entries
//	mclearing-keys          clearing keys learnt from rotations (32 bytes each)
//	mretired-clearing-keys  clearing keys a rotation retired (32 bytes each)
//	mrange-checked          present once clearing confirmed with range digests
//	moperator, mstop        the operator and stop the gate last opened the outbox with
var (
	keyLastSeq   = []byte("mlast-seq")
	keyConfirmed = []byte("mconfirmed")
	// keyRangeChecked marks an outbox that has had a confirmation with a
	// range digest: from then on it takes none without one (a downgrade
	// would let a confirmation cover events this outbox never signed).
	keyRangeChecked = []byte("mrange-checked")
	// keyDenyVersion is the version of the stored deny-list copy.
	keyDenyVersion = []byte("mdeny-version")
	// keyClearingKeys holds the clearing keys learnt from rotation
	// certificates (32 bytes each), trusted beside the configured ones;
	// keyRetiredKeys those a rotation replaced, never trusted again (even
	// if still configured). A clearing restored to before a rotation needs
	// the terminal's store cleared of them, or the terminal reprovisioned.
	keyClearingKeys = []byte("mclearing-keys")
	keyRetiredKeys  = []byte("mretired-clearing-keys")
	// keySigner is the public key the outbox's events are signed with: an
	// outbox opened with another key (a mistyped --key that made a fresh
	// one) is refused, or its next events would be refused by clearing.
	keySigner = []byte("msigner")
	// keyTerminalID is the terminal id the outbox's events name: an outbox
	// opened under another id (a mistyped --id) is refused, or the events
	// it took would name a terminal whose subject they are not sent on,
	// which clearing quarantines without using up their sequence: a gap
	// that never closes.
	keyTerminalID = []byte("mterminal-id")
	// keyOperator and keyStop are the operator and stop the gate last
	// opened its outbox with, which its events name and its NATS subject
	// carries: an entry signed in its place while it is stopped
	// (GiveUpDamaged) names them too, or clearing drops it as another
	// operator's without using up its sequence.
	keyOperator = []byte("moperator")
	// keyOperatorApplied is the operator the gate's events named when
	// clearing confirmed one of them applied (the confirmation walk), or
	// applied one naming another operator the gate ran with (conflictAt);
	// bindSigner refuses any other.
	keyOperatorApplied = []byte("moperator-applied")
	// keyOperatorsRun lists, comma-separated, the operators the gate was
	// started with (at most maxOperatorsRun): one of them may be the one
	// clearing applied its events naming (resign.go, conflictAt).
	keyOperatorsRun = []byte("moperators-run")
	keyStop         = []byte("mstop")
)

// Key prefixes: 'o' pending events by sequence, 'x' dead letters, 'n' the
// deny-list copy.
const (
	pOutbox     = 'o'
	pDeadLetter = 'x'
	pDenied     = 'n'
)

func outboxKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = pOutbox
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// readOutboxEntry reads the signed event under seq in the outbox.
func readOutboxEntry(txn *badger.Txn, seq uint64) ([]byte, error) {
	item, err := txn.Get(outboxKey(seq))
	if err != nil {
		return nil, fmt.Errorf("outbox entry %d: %w", seq, err)
	}
	return item.ValueCopy(nil)
}

func deadLetterKey(seq uint64) []byte {
	k := outboxKey(seq)
	k[0] = pDeadLetter
	return k
}

// Open opens the outbox and connects to NATS in the background; taps are
// accepted at once. Run streams the outbox.
func Open(cfg Config) (*Terminal, error) {
	for name, v := range map[string]string{"terminal": cfg.ID, "operator": cfg.Operator, "stop": cfg.Stop} {
		if err := fare.ValidateID(v); err != nil {
			return nil, fmt.Errorf("terminal config: %s id %q: %w", name, v, err)
		}
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("terminal %s: no signing key", cfg.ID)
	}
	if len(cfg.ClearingKeys) == 0 {
		return nil, fmt.Errorf("terminal %s: no clearing key: it could never act on a confirmation", cfg.ID)
	}
	for i, k := range cfg.ClearingKeys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("terminal %s: clearing key %d is %d bytes, want %d", cfg.ID, i+1, len(k), ed25519.PublicKeySize)
		}
	}
	cfg.ClearingKeys = slices.Clone(cfg.ClearingKeys) // rotations append to it
	natsID, err := fare.NewNATSIdentity(cfg.Key, cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("terminal %s: %w", cfg.ID, err)
	}
	if cfg.ListsDownWarn <= 0 {
		cfg.ListsDownWarn = 30 * time.Second
	}
	if cfg.ResendAfter <= 0 {
		cfg.ResendAfter = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	systemClock := cfg.Now == nil
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Deny == nil {
		cfg.Deny = TokenSet{}
	}
	// The outbox holds riders' card tokens in clear (the gate decides on
	// them offline); Badger's files are readable by all.
	if was, err := fare.PrivateDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("open outbox of terminal %s: %w", cfg.ID, err)
	} else if was != 0 {
		cfg.Logger.Warn("the outbox's directory was open to other users: made owner-only (it holds card tokens)", "terminal", cfg.ID, "dir", cfg.DataDir, "mode_was", fmt.Sprintf("%#o", was))
	}
	room := newDiskRoom(cfg.DataDir, cfg.MinFreeBytes)
	if err := room.checkOpen(time.Now()); err != nil {
		return nil, fmt.Errorf("open outbox of terminal %s: %w", cfg.ID, err)
	}
	if size, need, never := room.NeverRoom(time.Now()); never {
		// It opens (it may hold taps to send), but would refuse every tap:
		// said at start, not only at the first tap (an outside test).
		cfg.Logger.Error("the outbox's file system is no bigger than the free space the outbox keeps: every tap will be refused; give the gate a bigger disk, or a smaller --min-free-mib",
			"terminal", cfg.ID, "size_mib", size>>20, "keeps_free_mib", need>>20)
	}
	// Copies earlier starts kept and that hold nothing lost go first: they
	// count toward maxKeptCopies.
	waiting := pruneKeptCopies(cfg.DataDir, room, cfg.Logger.With("terminal", cfg.ID))
	db, keptAside, reused, err := openStore(storeOptions(cfg.DataDir), room, cfg.Logger.With("terminal", cfg.ID))
	if err != nil {
		return nil, fmt.Errorf("open outbox of terminal %s in %s: %w", cfg.ID, cfg.DataDir, err)
	}
	t := &Terminal{
		cfg: cfg, log: cfg.Logger.With("terminal", cfg.ID), db: db, room: room, watchClock: systemClock,
		taps: make(chan tapReq, 256), writerDone: make(chan struct{}), written: make(chan struct{}, 1),
		marks: make(chan []byte, 16), stop: make(chan struct{}), nats: natsID,
		refusedBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faregate_terminal_confirmations_refused_total", Help: "Confirmations the terminal ignored, by reason (untrusted signature, malformed, another terminal's, digest mismatch, beyond the outbox).",
			ConstLabels: prometheus.Labels{"terminal": cfg.ID},
		}, []string{"reason"}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "faregate_terminal_outbox_corrupt_entries_total", Help: "Outbox entries that did not verify with the terminal's own key when about to be sent (a damaged store), each time found; they are not sent.",
			ConstLabels: prometheus.Labels{"terminal": cfg.ID},
		}),
	}
	t.refusals = fare.NewTally(t.log, "confirmations ignored")
	t.listsLostAt.Store(time.Now().UnixNano())
	t.synced = make(chan struct{})
	t.diskLog = fare.NewTally(t.log, "the outbox's disk is (nearly) full")
	t.denyRefusals = fare.NewTally(t.log, "gate-list values ignored")
	t.denyRefusedBy = newDenyRefusedMetric(cfg.ID)
	for _, r := range refusalReasons {
		t.refusedBy.WithLabelValues(r)
	}
	t.denyRefused = make(map[string]*atomic.Uint64, len(denyRefusalReasons))
	for _, r := range denyRefusalReasons {
		t.denyRefusedBy.WithLabelValues(r)
		t.denyRefused[r] = new(atomic.Uint64)
	}
	t.commitTxn = (*badger.Txn).Commit
	t.closeWait = storeCloseWait
	t.commitLog = fare.NewTally(t.log, "outbox commits fail")
	t.commitFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "faregate_terminal_outbox_commit_failures_total", Help: "Outbox commits (a group of taps) that failed, a disk turned read-only or failing: their taps were refused, not written.",
		ConstLabels: prometheus.Labels{"terminal": cfg.ID},
	})
	t.diskRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "faregate_terminal_taps_refused_disk_full_total", Help: "Taps refused because the outbox's disk had less free space than its margin.",
		ConstLabels: prometheus.Labels{"terminal": cfg.ID},
	})
	if err := bindSigner(db, cfg.Key.Public().(ed25519.PublicKey), cfg.ID, cfg.Operator, cfg.Stop); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox of terminal %s in %s: %w", cfg.ID, cfg.DataDir, err)
	}
	if n, err := signForOperator(db, cfg.Key, cfg.Operator); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox of terminal %s in %s: %w", cfg.ID, cfg.DataDir, err)
	} else if n > 0 {
		t.log.Warn("outbox events naming another --operator, before clearing applied any of this gate's, signed again naming this one (the gate was started with a wrong operator once; or this one is wrong, and a start with the right one signs them back)",
			"events", n, "operator", cfg.Operator)
	}
	err = db.View(func(txn *badger.Txn) error {
		last, err := getU64(txn, keyLastSeq)
		if err != nil {
			return err
		}
		conf, err := getU64(txn, keyConfirmed)
		if err != nil {
			return err
		}
		t.lastSeq.Store(last)
		t.confirmed.Store(conf)
		if op, err := getString(txn, keyOperatorApplied); err != nil {
			return err
		} else if op == t.cfg.Operator {
			t.operatorApplied.Store(true)
		}
		if err := t.loadRejectedGate(txn, conf); err != nil {
			return err
		}
		if err := t.loadSkip(txn); err != nil {
			return err
		}
		if _, err := txn.Get(keyUnanchored); err == nil {
			t.unanchored.Store(true)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := t.loadDenyCopy(txn); err != nil {
			return err
		}
		if t.learnt, err = getKeys(txn, keyClearingKeys); err != nil {
			return err
		}
		if t.retired, err = getKeys(txn, keyRetiredKeys); err != nil {
			return err
		}
		if _, err := txn.Get(keyRangeChecked); err == nil {
			t.rangeChecked.Store(true)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		for _, k := range t.learnt {
			t.trust(k)
		}
		for _, k := range t.retired {
			t.distrust(k)
		}
		if len(t.cfg.ClearingKeys) == 0 {
			return errors.New("every provisioned clearing key was retired by a rotation and none was learnt: provision the current key")
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read outbox of terminal %s: %w", cfg.ID, err)
	}
	// A skip confirmed to its start and not passed (an earlier build passed
	// it in a transaction of its own, which a stop could miss): passed now.
	if err := t.passSkip(); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox of terminal %s: %w", cfg.ID, err)
	}
	hw, recorded, ok, err := openHighWater(cfg.DataDir)
	if err != nil {
		db.Close()
		return nil, err
	}
	lossAccepted := false
	if ok && recorded > t.lastSeq.Load() && cfg.AcceptLostTaps {
		lossAccepted = true
		attrs := []any{"last_sequence_held", t.lastSeq.Load(), "highest_committed", recorded, "lost", recorded - t.lastSeq.Load()}
		if keptAside != "" { // else a copy an earlier start kept, named with the others below
			attrs = append(attrs, "kept", keptAside)
		}
		t.log.Error("the outbox lost accepted taps, and the loss was accepted (--accept-lost-taps): taps it still holds are sent; new taps are numbered after them, and signed again under a later sequence where clearing holds a lost one", attrs...)
		if err := hw.reset(t.lastSeq.Load()); err != nil {
			hw.close()
			db.Close()
			return nil, err
		}
		recorded = t.lastSeq.Load()
	}
	if ok && recorded > t.lastSeq.Load() {
		hw.close()
		db.Close()
		kept := ""
		if keptAside != "" {
			kept = fmt.Sprintf("; the store as it was before this start's open repaired it is kept in %s (what Badger could not read is there, for recovery)", keptAside)
		}
		return nil, fmt.Errorf("terminal %s: %w: its store in %s ends at sequence %d, but sequence %d was committed (%s): the store is damaged (its write-ahead log or MANIFEST), and new taps would be signed under sequences accepted taps had; restore the store, or, once the lost taps are given up, start the gate once with --accept-lost-taps (the taps the store still holds are then sent; an empty --data would drop them)%s",
			cfg.ID, ErrOutboxLost, cfg.DataDir, t.lastSeq.Load(), recorded, HighWaterFile, kept)
	}
	if !ok && (hw.size > 0 || t.lastSeq.Load() > 0) {
		// The record that guards against a lost tail is itself damaged:
		// the store is believed, and a loss would go unseen this once.
		// An empty or missing one beside a store that holds taps is the
		// same (a crash while it was first written, or it was removed).
		t.log.Warn("the outbox's high-water mark is damaged, empty or missing and was not used: a store that lost accepted taps would not be caught at this start", "file", filepath.Join(cfg.DataDir, HighWaterFile))
	}
	if keptAside != "" {
		// The copy holds card tokens: it goes once nothing accepted can
		// have been lost, which needs a high-water mark that verifies and
		// every unconfirmed tap still held; otherwise it stays, said.
		held, want, err := t.heldUnconfirmed()
		switch {
		case err != nil:
			hw.close()
			db.Close()
			return nil, fmt.Errorf("outbox of terminal %s: %w (the store as it was is kept in %s)", cfg.ID, err, keptAside)
		case reused:
			t.log.Warn("a copy of the outbox kept by an earlier start is still there: recover the taps in it, then delete it (it holds card tokens)", "kept", keptAside)
		case ok && held == want && !lossAccepted: // an accepted loss keeps what may be recovered yet
			if err := removeKept(keptAside); err != nil {
				t.log.Error("remove the outbox's copy kept before opening it", "dir", keptAside, "err", err)
			}
		default:
			t.log.Error("the outbox's store was repaired at open, and it cannot be shown that no accepted tap was lost: the store as it was is kept; recover the taps in it, then delete it (it holds card tokens)",
				"kept", keptAside, "unconfirmed_held", held, "unconfirmed_expected", want, "high_water_mark_verified", ok)
		}
	}
	// Said at every start, not only the one that made them: they hold card
	// tokens, and at maxKeptCopies the store is not repaired again.
	if waiting = slices.DeleteFunc(waiting, func(p string) bool { return p == keptAside }); len(waiting) > 0 {
		t.log.Warn("copies of the outbox kept by earlier starts wait to be recovered: recover the taps in them, then delete them (they hold card tokens); with 3 kept the gate does not repair its store again", "kept", strings.Join(waiting, ", "))
	}
	if err := hw.note(t.lastSeq.Load()); err != nil {
		hw.close()
		db.Close()
		return nil, err
	}
	t.hw = hw
	if err := t.finishRebase(); err != nil { // one a crash interrupted
		hw.close()
		db.Close()
		return nil, fmt.Errorf("outbox of terminal %s: %w", cfg.ID, err)
	}
	if err := t.register(); err != nil {
		hw.close()
		db.Close()
		return nil, err
	}
	t.wg.Add(2)
	go t.writeLoop()
	go t.syncHighWater()
	return t, nil
}

// storeOptions are the outbox store's options. Small tables: a city runs
// thousands of terminals, a simulator dozens in one process, and an outbox
// holds minutes of taps.
func storeOptions(dir string) badger.Options {
	return badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(nil).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20).
		WithValueLogFileSize(16 << 20).
		WithValueThreshold(4 << 10).
		WithNumCompactors(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4)
}

// openStore opens the outbox's Badger store, its table files checked
// first: Badger opens them on goroutines of its own, where one cut short
// panics the process instead of failing the open.
//
// A store that needs repair (a damaged write-ahead log, a lost MANIFEST)
// is repaired by Badger's open, which deletes what it cannot read:
// accepted taps past the damage, tables the MANIFEST no longer names. So a
// store not closed cleanly (a write-ahead log left: a crash) or without its
// MANIFEST is copied aside, synced, before any open, and one that will not
// open read-only is copied then; keptAside names the copy. The caller
// removes it once it has checked that nothing accepted was lost. A copy
// already there of the store as it is now is not made again (keepAside).
func openStore(opts badger.Options, room *diskRoom, log *slog.Logger) (db *badger.DB, keptAside string, reused bool, err error) {
	// Only the tables the MANIFEST names (a table a crash left
	// half-written is no damage: Badger's open deletes it), every index
	// and block checked: a flipped byte panics Badger's compaction on a
	// goroutine of its own (an outside test saw it at every start).
	if err := storecheck.Store(opts); err != nil {
		if errors.Is(err, storecheck.ErrNoAccess) {
			return nil, "", false, err // nothing damaged: no repair, no copy
		}
		if errors.Is(err, storecheck.ErrMissing) {
			return nil, "", false, fmt.Errorf("%w: the store cannot be opened; put the file back from a backup of the store, or move the store aside and start the gate on an empty --data (the taps it held and clearing never confirmed are then lost)", err)
		}
		// A damaged table or index: Badger repairs none of it, and a
		// start cannot (an outside test flipped one byte and was sent
		// between give-up and the gate, each naming the other).
		return nil, "", false, fmt.Errorf("%w: Badger cannot repair this; restore the store from a backup, or move it aside (keep it: it holds the unconfirmed taps, for recovery) and start the gate on an empty --data (the taps clearing never confirmed are then lost)", err)
	}
	keep := func(why error) (err error) {
		keptAside, reused, err = keepAside(opts.Dir, room, why)
		return err
	}
	// Log files Badger created and never wrote hold nothing, and its open
	// fails on them once (an outside test: the copy kept then never
	// checked out, and three such incidents refused the gate for good).
	if !fare.DirLocked(opts.Dir) {
		removed, err := storecheck.RemoveEmptyLogs(opts.Dir)
		if err != nil {
			return nil, "", false, err
		}
		if len(removed) > 0 {
			log.Warn("outbox log files created and never written removed (empty: a power cut right after the store made them); they held nothing", "files", removed)
		}
	}
	if unclean, why := storeUnclean(opts.Dir); unclean {
		// A store another process has open looks unclean too (its log is
		// there): that is no damage, and Badger's open says who has it.
		if !fare.DirLocked(opts.Dir) {
			if err := keep(why); err != nil {
				return nil, "", false, err
			}
		}
	}
	if keptAside == "" && storeFiles(opts.Dir) {
		ro, rerr := badger.Open(opts.WithReadOnly(true))
		switch {
		case rerr == nil:
			if err := ro.Close(); err != nil {
				return nil, "", false, err
			}
		case strings.Contains(rerr.Error(), "Cannot acquire directory lock"):
			return nil, "", false, rerr // another process has it: nothing to repair
		default:
			if err := keep(rerr); err != nil {
				return nil, "", false, err
			}
		}
	}
	db, err = badger.Open(opts)
	if err != nil && keptAside != "" {
		err = fmt.Errorf("%w (the store as it was is kept in %s)", err, keptAside)
	}
	return db, keptAside, reused, err
}

// maxKeptCopies is how many copies of a damaged outbox a gate keeps before
// it refuses to repair the store again: each may hold the only record of
// accepted taps, and someone has to look at them.
const maxKeptCopies = 3

// keepAside copies the outbox store in dir aside before Badger may repair
// it. A copy an earlier start kept of the store as it is now (the same files,
// the same sizes: a restart loop over a store that will not open) is named
// and not made again; a store that changed since (a later incident) is
// copied again, up to maxKeptCopies, after which the store is left as it is
// and the gate refused: an earlier incident's taps are not yet recovered.
// The copy is made only if it leaves the room the outbox opens with
// (room.roomFor): it takes the bytes the store holds, not its files'
// sizes (copyFileSynced).
func keepAside(dir string, room *diskRoom, why error) (kept string, reused bool, err error) {
	dir = filepath.Clean(dir)
	// A copy is made under a name of its own and renamed once whole: one a
	// crash cut short (the store it copied was left as it was) is of no use
	// and goes (an outside test saw three such leftovers, taken for kept
	// copies, refuse the gate for good).
	for _, p := range keptCopies(dir, copyingInfix) {
		if err := os.RemoveAll(p); err != nil {
			return "", false, fmt.Errorf("remove %s, a copy of the outbox an earlier start did not finish: %w", p, err)
		}
	}
	old := keptCopies(dir, damagedInfix)
	if n := len(old); n > 0 && sameStoreFiles(dir, old[n-1]) {
		return old[n-1], true, nil // never removed here
	}
	if len(old) >= maxKeptCopies {
		return "", false, fmt.Errorf("the store may need repair (%v), and %d copies of it kept by earlier starts (%s) still wait to be recovered: the store was left as it is; recover the taps in the copies and delete them (they hold card tokens), then start the gate again", why, len(old), strings.Join(old, ", "))
	}
	need, err := storeBytesInUse(dir)
	if err == nil {
		err = room.roomFor(need, "a copy of the store")
	}
	if err != nil {
		return "", false, fmt.Errorf("the store may need repair (%v) and could not be copied aside first, so it was left as it is: %w", why, err)
	}
	stamp := time.Now().UTC().Format(copyStamp)
	kept, copying := dir+damagedInfix+stamp, dir+copyingInfix+stamp
	err = copyStore(dir, copying)
	if err == nil {
		err = os.Rename(copying, kept)
	}
	if err == nil {
		err = fare.SyncDir(filepath.Dir(kept))
	}
	if err != nil {
		os.RemoveAll(copying)
		os.RemoveAll(kept)
		hint := ""
		if errors.Is(err, fs.ErrPermission) {
			// The copy goes beside --data (an outside test's gate, its
			// --data a systemd state directory, could not write /var/lib).
			hint = fmt.Sprintf(" (the copy goes beside --data, in %s, which the gate's user must be able to write: give --data a directory inside one it owns)", filepath.Dir(dir))
		}
		return "", false, fmt.Errorf("the store may need repair (%v) and could not be copied aside first, so it was left as it is%s: %w", why, hint, err)
	}
	return kept, false, nil
}

// The copies of a damaged outbox are directories beside it named
// <dir><infix><time>, the time in copyStamp's layout.
const (
	damagedInfix = ".damaged-"
	copyingInfix = ".copying-" // a copy not yet whole
	copyStamp    = "20060102T150405.000000000Z"
)

// keptCopies lists, in time order, the copies of dir's store with infix
// beside it: directories named exactly so, their time readable, and no
// other (a user's dir.copying-notes is not the gate's to remove, and a dir
// with glob characters in its name is not a pattern; an outside test).
func keptCopies(dir, infix string) []string {
	parent, prefix := filepath.Dir(dir), filepath.Base(dir)+infix
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		stamp, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.IsDir() {
			continue
		}
		if _, err := time.Parse(copyStamp, stamp); err != nil {
			continue
		}
		out = append(out, filepath.Join(parent, e.Name()))
	}
	return out // ReadDir sorts by name: by time
}

// sameStoreFiles says whether the regular files of dir and of its copy have
// the same names and sizes.
func sameStoreFiles(dir, copied string) bool {
	sizes := func(d string) (map[string]int64, bool) {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, false
		}
		out := map[string]int64{}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return nil, false
			}
			out[e.Name()] = info.Size()
		}
		return out, true
	}
	a, ok := sizes(dir)
	b, ok2 := sizes(copied)
	return ok && ok2 && maps.Equal(a, b)
}

// storeUnclean says whether dir's store was not closed cleanly (Badger
// leaves no write-ahead log at a clean close) or has lost its MANIFEST.
func storeUnclean(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, nil
	}
	manifest, files := false, false
	for _, e := range ents {
		switch n := e.Name(); {
		case n == "MANIFEST":
			manifest, files = true, true
		case strings.HasSuffix(n, ".mem"):
			return true, fmt.Errorf("write-ahead log %s left by a store not closed cleanly", n)
		case strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".vlog"):
			files = true
		}
	}
	if files && !manifest {
		return true, errors.New("no MANIFEST")
	}
	return false, nil
}

// storeFiles says whether dir holds any of a Badger store's files.
func storeFiles(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		n := e.Name()
		if n == "MANIFEST" || strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".vlog") || strings.HasSuffix(n, ".mem") {
			return true
		}
	}
	return false
}

// syncHighWater makes the high-water mark durable each second it moved.
func (t *Terminal) syncHighWater() {
	defer t.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			if err := t.hw.sync(); err != nil {
				t.log.Error("outbox high-water mark", "err", err)
			}
		}
	}
}

// HasOutbox reports whether dir holds a terminal's outbox (Badger's
// MANIFEST): its events were signed with a key that must be given again.
func HasOutbox(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "MANIFEST"))
	return err == nil
}

// bindSigner records pub as the key of the outbox's events, and id as the
// terminal they name, on first use, and refuses another key or id after.
// An outbox from before a record was kept takes the key it is first opened
// with, and the id its events name (the id it is opened with if it holds
// none). It records operator and stop as those the gate runs with.
//
// A gate's operator is its registration's, fixed on the ledger: once
// clearing applied any of the outbox's events (keyOperatorApplied), the
// operator they named is that one, and another is refused (its taps would
// be signed naming an operator NATS and clearing refuse for this terminal:
// an outside test's one start under a wrong --operator blocked its gate's
// outbox). A confirmation's watermark alone proves nothing: a new outbox
// anchored after clearing's record, or moved past it, is confirmed there
// without an event of its own applied.
func bindSigner(db *badger.DB, pub ed25519.PublicKey, id, operator, stop string) error {
	return db.Update(func(txn *badger.Txn) error {
		proven, err := getString(txn, keyOperatorApplied)
		if err != nil {
			return err
		}
		if proven != "" && proven != operator {
			return fmt.Errorf("clearing applied its events naming operator %q: give --operator %s (a terminal's operator is its registration's on the ledger; taps signed naming another would be refused by NATS and clearing)", proven, proven)
		}
		run, err := getString(txn, keyOperatorsRun)
		if err != nil {
			return err
		}
		if run == "" {
			// An outbox from before the list: the operator it last ran
			// with starts it (its taps, applied unheard and signed again
			// now, are then recognised: an outside re-check).
			if run, err = getString(txn, keyOperator); err != nil {
				return err
			}
		}
		var ops []string
		if run != "" {
			ops = strings.Split(run, ",")
		}
		if !slices.Contains(ops, operator) {
			if len(ops) >= maxOperatorsRun {
				ops = append(ops[:1], ops[2:]...) // the first, the one a gate began with, stays
			}
			if err := txn.Set(keyOperatorsRun, []byte(strings.Join(append(ops, operator), ","))); err != nil {
				return err
			}
		}
		for k, v := range map[string]string{string(keyOperator): operator, string(keyStop): stop} {
			if err := txn.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		item, err := txn.Get(keySigner)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			if err := markNew(txn); err != nil {
				return err
			}
			if err := txn.Set(keySigner, slices.Clone(pub)); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if err := item.Value(func(v []byte) error {
				if !bytes.Equal(v, pub) {
					return fmt.Errorf("its events are signed with key 0x%x, this terminal's key is 0x%x: give the key file this outbox was made with (a new key's events would be refused by clearing)", v, []byte(pub))
				}
				return nil
			}); err != nil {
				return err
			}
		}
		held, err := outboxTerminalID(txn)
		if err != nil {
			return err
		}
		if held != "" && held != id {
			return fmt.Errorf("its events name terminal %q, not %q: give --id %s (events taken under another id would name a terminal whose subject they are not sent on, and clearing could never apply them)", held, id, held)
		}
		if held == "" {
			return txn.Set(keyTerminalID, []byte(id))
		}
		return nil
	})
}

// maxOperatorsRun bounds the operators an outbox remembers it was started
// with.
const maxOperatorsRun = 8

// signForOperator signs again, naming operator, the outbox's pending
// events that name another (bindSigner has refused an operator other than
// the one clearing applied events naming): an earlier start's --operator
// was wrong, and its taps, genuine, would otherwise never be applied. Only
// the operator changes (sequence, id, time, medium stay), and signatures
// are deterministic, so a start with the right operator signs them back
// to the very bytes they were; one clearing applied before the gate heard
// is recognised when clearing's record of its sequence comes back
// (conflictAt). Entries the disk damaged are left to their own handling.
// Batches of transactions, each whole: a stop between them leaves the
// rest for the next start, which finds them again.
func signForOperator(db *badger.DB, key ed25519.PrivateKey, operator string) (int, error) {
	pub := key.Public().(ed25519.PublicKey)
	var stale []uint64
	err := db.View(func(txn *badger.Txn) error {
		// A gate only ever started with this operator holds no event
		// naming another: the outbox is not read (most starts).
		if run, err := getString(txn, keyOperatorsRun); err != nil || run == operator {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pOutbox}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := it.Item().Value(func(raw []byte) error {
				// Decoded at every start, verified only where the operator
				// differs: an ed25519 check of every pending tap would add
				// seconds to a start with a large outbox.
				e, err := fare.Decode(raw)
				if err == nil && e.Operator != operator && e.Verify(pub) == nil {
					stale = append(stale, e.Sequence)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(stale) == 0 {
		return 0, err
	}
	const batch = 1000
	for lo := 0; lo < len(stale); lo += batch {
		err := db.Update(func(txn *badger.Txn) error {
			for _, seq := range stale[lo:min(lo+batch, len(stale))] {
				raw, err := readOutboxEntry(txn, seq)
				if err != nil {
					return err
				}
				e, err := fare.Decode(raw)
				if err != nil {
					return fmt.Errorf("outbox entry %d: %w", seq, err)
				}
				e.Operator = operator
				signed, err := fare.Sign(&e.Event, key)
				if err != nil {
					return fmt.Errorf("outbox entry %d: %w", seq, err)
				}
				if err := txn.Set(outboxKey(seq), signed); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return lo, fmt.Errorf("sign events again naming operator %s: %w", operator, err)
		}
	}
	return len(stale), nil
}

// outboxTerminalID is the terminal id the outbox's events name: its
// record, else (an outbox from before the record) its newest pending
// event's; "" when it holds neither.
func outboxTerminalID(txn *badger.Txn) (string, error) {
	item, err := txn.Get(keyTerminalID)
	switch {
	case err == nil:
		v, err := item.ValueCopy(nil)
		return string(v), err
	case !errors.Is(err, badger.ErrKeyNotFound):
		return "", err
	}
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: []byte{pOutbox}})
	defer it.Close()
	it.Seek(outboxKey(math.MaxUint64))
	if !it.Valid() {
		return "", nil
	}
	raw, err := it.Item().ValueCopy(nil)
	if err != nil {
		return "", err
	}
	s, err := fare.Decode(raw)
	if err != nil {
		return "", nil // not this check's to judge: the sender reports it
	}
	return s.Event.Terminal, nil
}

// trust adds k to the trusted clearing keys unless it is there; distrust
// removes it. Only Open and Run's goroutine change the keys (and read them
// unlocked); ClearingKeys reads them from anywhere.
func (t *Terminal) trust(k ed25519.PublicKey) {
	if slices.ContainsFunc(t.cfg.ClearingKeys, sameKey(k)) {
		return
	}
	t.keysMu.Lock()
	t.cfg.ClearingKeys = append(t.cfg.ClearingKeys, k)
	t.keysMu.Unlock()
}

func (t *Terminal) distrust(k ed25519.PublicKey) {
	t.keysMu.Lock()
	t.cfg.ClearingKeys = slices.DeleteFunc(t.cfg.ClearingKeys, sameKey(k))
	t.keysMu.Unlock()
}

// learn follows clearing's rotation chain. A link that verifies with a
// trusted key makes its new key trusted (unless that key was retired) and
// retires the signer, which then signs nothing more this terminal acts on;
// both facts are kept in the store. A link no trusted key signed is passed
// over silently: it is older than the key this terminal was provisioned
// with, or not clearing's, and the confirmation after it must verify on
// its own anyway.
func (s *sender) learn(rotations [][]byte) {
	t := s.t
	for _, rb := range rotations {
		link := sha256.Sum256(rb)
		if s.seenLinks[link] {
			continue
		}
		var r *fare.KeyRotation
		var signer ed25519.PublicKey
		for _, k := range t.cfg.ClearingKeys {
			if v, err := fare.VerifyKeyRotation(rb, []ed25519.PublicKey{k}); err == nil {
				r, signer = v, k
				break
			}
		}
		if r == nil {
			continue
		}
		if s.seenLinks == nil {
			s.seenLinks = make(map[[32]byte]bool)
		}
		s.seenLinks[link] = true
		if slices.ContainsFunc(t.retired, sameKey(r.NewKey)) || r.NewKey.Equal(signer) {
			continue // no way back to a retired key
		}
		learnt := append(slices.DeleteFunc(slices.Clone(t.learnt), sameKey(r.NewKey)), r.NewKey)
		retired := append(slices.Clone(t.retired), signer)
		err := t.db.Update(func(txn *badger.Txn) error {
			if err := txn.Set(keyClearingKeys, joinKeys(learnt)); err != nil {
				return err
			}
			return txn.Set(keyRetiredKeys, joinKeys(retired))
		})
		if err != nil {
			t.log.Error("keep learnt clearing key; not trusting it yet", "err", err)
			return
		}
		t.trust(r.NewKey)
		t.distrust(signer)
		t.keysMu.Lock()
		t.learnt, t.retired = learnt, retired
		t.keysMu.Unlock()
		t.log.Info("clearing's confirmation key rotated", "new_key", fmt.Sprintf("0x%x", []byte(r.NewKey)),
			"retired_key", fmt.Sprintf("0x%x", []byte(signer)), "issued_at", r.IssuedAt)
	}
}

func sameKey(k ed25519.PublicKey) func(ed25519.PublicKey) bool {
	return func(x ed25519.PublicKey) bool { return x.Equal(k) }
}

func joinKeys(keys []ed25519.PublicKey) []byte {
	b := make([]byte, 0, len(keys)*ed25519.PublicKeySize)
	for _, k := range keys {
		b = append(b, k...)
	}
	return b
}

func getKeys(txn *badger.Txn, key []byte) ([]ed25519.PublicKey, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PublicKey
	err = item.Value(func(v []byte) error {
		if len(v)%ed25519.PublicKeySize != 0 {
			return fmt.Errorf("%s: corrupt, %d bytes", key[1:], len(v))
		}
		for i := 0; i < len(v); i += ed25519.PublicKeySize {
			keys = append(keys, ed25519.PublicKey(bytes.Clone(v[i:i+ed25519.PublicKeySize])))
		}
		return nil
	})
	return keys, err
}

// ClearingKeys are the clearing keys the terminal trusts: the configured
// ones and those learnt from rotations.
func (t *Terminal) ClearingKeys() []ed25519.PublicKey {
	t.keysMu.Lock()
	defer t.keysMu.Unlock()
	return slices.Clone(t.cfg.ClearingKeys)
}

// NATSUser is the terminal's NATS user NKey, derived from its key.
func (t *Terminal) NATSUser() string { return t.nats.PublicKey() }

// NATSOptions are the options of a NATS connection as this terminal: its
// derived NKey, its private inbox prefix and, if configured, its CA.
func (t *Terminal) NATSOptions() []nats.Option {
	return NATSOptions(t.nats, t.cfg.ID, t.cfg.NATSCA)
}

// NATSOptions are the connection options of terminal id with NATS identity
// ident: a client holding the terminal's key (a test, a simulator injecting
// faults) connects exactly as the terminal does. ca may be empty.
func NATSOptions(ident *fare.NATSIdentity, id, ca string) []nats.Option {
	opts := []nats.Option{nats.Nkey(ident.PublicKey(), ident.Sign), nats.CustomInboxPrefix(fare.TerminalInboxPrefix(id)),
		// A connection the server never closed (a frozen node, a cut
		// that sends no reset) is given up in seconds, not nats.go's
		// minutes: the gate then reconnects to another node.
		nats.PingInterval(fare.NATSPingInterval), nats.MaxPingsOutstanding(fare.NATSMaxPingsOut)}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	return opts
}

// RefusedConfirmations counts confirmations the terminal ignored.
func (t *Terminal) RefusedConfirmations() uint64 { return t.refused.Load() }

// CorruptEntries counts outbox entries found corrupt (not verifying with
// the terminal's own key) when about to be sent, each time found.
func (t *Terminal) CorruptEntries() uint64 { return t.corruptN.Load() }

// RejectedEvents counts events clearing rejected that this terminal moved to
// its dead-letter area since it opened.
func (t *Terminal) RejectedEvents() uint64 { return t.rejected.Load() }

// ID is the terminal's id.
func (t *Terminal) ID() string { return t.cfg.ID }

// PublicKey is the key to register for this terminal.
func (t *Terminal) PublicKey() ed25519.PublicKey { return t.cfg.Key.Public().(ed25519.PublicKey) }

// Pending is how many events wait in the outbox for clearing's confirmation.
func (t *Terminal) Pending() uint64 {
	// The watermark first: every writer stores the last sequence before
	// it, and the last sequence never falls, so last >= conf (read the
	// other way round, a skip passed in between wrapped the difference to
	// near 2^64).
	conf := t.confirmed.Load()
	last := t.lastSeq.Load()
	if conf >= last {
		return 0
	}
	n, gap := last-conf, t.skipGap()
	if gap > n { // read while a skip was being passed
		return 0
	}
	return n - gap
}

// LastSequence is the highest sequence number the terminal has used.
func (t *Terminal) LastSequence() uint64 { return t.lastSeq.Load() }

// Confirmed is clearing's watermark as this terminal last heard it.
func (t *Terminal) Confirmed() uint64 { return t.confirmed.Load() }

// Published counts publish attempts, resends included.
func (t *Terminal) Published() uint64 { return t.published.Load() }

// ClockOffset is how far the gate's clock (Config.Now) was ahead of
// clearing's (negative: behind) when clearing last answered its request,
// within the round trip; 0 before any answer.
func (t *Terminal) ClockOffset() time.Duration { return time.Duration(t.clockOffset.Load()) }

// ClockCorrection is how far behind its own clock (Config.Now) the gate
// stamps the taps it times itself: clearing's clock as its last answer to
// a nonce-bound request showed it, when the gate's is provably off by more
// than clockTolerance and by at most clockWarnAfter (followClock); 0
// otherwise. Taps given a Time are stamped as given.
func (t *Terminal) ClockCorrection() time.Duration {
	if t.follow.Load() == nil {
		return 0
	}
	return t.cfg.Now().Sub(t.tapClock())
}

// clockFollow is clearing's clock as a gate follows it: clearing's time
// when its answer came (at) and the gate's monotonic clock then (mono).
// Taps are stamped at plus the monotonic time since, not the gate's own
// clock less a fixed correction: a gate clock stepped right (NTP, or by
// hand as the log asks) must not leave its taps minutes off until the
// next answer (an outside recheck saw such a ride charged two maximum
// fares).
type clockFollow struct{ at, mono time.Time }

// tapClock is the time the gate stamps a tap it times itself with:
// clearing's clock while following it, else its own. A gate whose own
// clock moved against its monotonic clock since the last answer (stepped
// by hand or by a bad time source; or the machine slept) asks clearing at
// once and says so: the answer tells which clock moved (readClock), where
// before a step went into its taps unsaid until the next answer, up to
// clockRefresh later (an outside test stepped a gate's clock an hour
// back). Until then it stamps its own clock: after a machine's sleep that
// is the right one, and the monotonic one is behind.
func (t *Terminal) tapClock() time.Time {
	if f := t.follow.Load(); f != nil {
		return f.at.Add(time.Since(f.mono))
	}
	now := t.cfg.Now()
	if k := t.kept.Load(); k != nil && t.watchClock && !t.clockJumped.Load() {
		since := time.Since(k.mono)
		// Wall readings only (Round(0)): time.Now's monotonic reading
		// would make Sub compare the monotonic clocks, which a step of the
		// wall clock does not move (an outside recheck saw a gate stepped
		// an hour back stamp it for ten minutes, never flagged).
		if d, bound := now.Round(0).Sub(k.wall.Round(0).Add(since)), clockTolerance+since/clockSlew; d > bound || d < -bound {
			t.clockJumped.Store(true)
			t.log.Warn("the gate's clock moved against its monotonic clock since clearing's last answer: it asks clearing now; set the gate's clock (NTP)",
				"moved", d.Round(time.Millisecond).String())
		}
	}
	return now
}

// farOff says whether a gate clock off clearing's by off stamps taps that
// clearing would hold or reject, every one.
func farOff(off time.Duration) bool {
	return off > fare.DeviceTimeAhead || off < -fare.DeviceTimeBehind
}

// clockAnchor is the gate's own clock at an answer: its wall clock (wall)
// and monotonic clock (mono) then, and how far the wall clock was off
// clearing's (off). The gate's own clock carried on from it by the
// monotonic clock, less off, is clearing's as it was then carried on:
// readClock measures how far clearing's has moved since against it.
type clockAnchor struct {
	wall, mono time.Time
	off        time.Duration
}

// clockSlew bounds how fast a disciplined clock may drift off the
// monotonic one: 1 in 2,000 (500 ppm, the most an NTP daemon slews).
const clockSlew = 2000

// followClock is the correction a gate applies to its clock given an
// answer's offset (the gate's clock less clearing's, at the middle of the
// round trip) and half the round trip (the offset's uncertainty).
// Clearing's fare clock is the city's: a gate within a few minutes of it
// follows it, so that two gates whose clocks differ by minutes do not date
// a short ride's exit before its entry (an outside test saw such a ride
// charged two maximum fares). Beyond clockWarnAfter the gate's clock (or
// clearing's) is broken rather than drifting: the gate stamps its own
// time, says so and is not ready, and clearing holds or rejects taps by
// their date as before, so a clearing clock gone wrong by hours or days
// never re-dates every gate's taps. Within the round trip's uncertainty
// plus clockTolerance nothing is corrected (an NTP-synced gate's taps stay
// as its clock stamps them). (readClock follows clearing's clock beyond
// clockWarnAfter too where the gate knows its own clock moved.)
func followClock(offset, halfRoundTrip time.Duration) time.Duration {
	if offset > clockWarnAfter || offset < -clockWarnAfter {
		return 0
	}
	if offset <= halfRoundTrip+clockTolerance && offset >= -(halfRoundTrip+clockTolerance) {
		return 0
	}
	return offset
}

// Probes counts resend rounds that sent only the first unconfirmed event,
// clearing having said nothing since the last round (see Run).
func (t *Terminal) Probes() uint64 { return t.probes.Load() }

// ErrClosed is returned by Tap after Close.
var ErrClosed = errors.New("terminal closed")

// Tap decides a tap, signs the event and makes it durable in the outbox
// before returning: when Tap returns nil the gate may open and the event
// will reach clearing eventually, across crashes and outages. Its answer
// is always what the outbox holds: a tap whose ctx ends before the writer
// takes it is not written (ctx's error), and one the writer has taken is
// answered as written, even if ctx ends meanwhile (a group commit is one
// synced write). Otherwise a gate told "failed" would stay shut while the
// tap it refused reached clearing and was charged.
func (t *Terminal) Tap(ctx context.Context, tap Tap) (fare.Event, error) {
	if tap.Media == fare.Face && tap.face == nil {
		return fare.Event{}, ErrFaceWithoutCamera
	}
	// Face matching takes tens of milliseconds: here, in the caller's
	// goroutine, never in the outbox writer's.
	if err := t.verifyHolder(ctx, &tap); err != nil {
		return fare.Event{}, err
	}
	if err := t.room.check(time.Now()); err != nil {
		t.diskRefused.Inc()
		t.diskLog.Add("tap refused", err.Error())
		return fare.Event{}, err
	}
	req := tapReq{ctx: ctx, tap: tap, reply: make(chan tapResult, 1), state: new(atomic.Int32)}
	// taps is buffered, so a send can succeed after Close: check stop first
	// and watch it while waiting for the writer.
	select {
	case <-t.stop:
		return fare.Event{}, ErrClosed
	default:
	}
	select {
	case t.taps <- req:
	case <-t.stop:
		return fare.Event{}, ErrClosed
	case <-ctx.Done():
		return fare.Event{}, ctx.Err()
	}
	// Queued: the writer answers every request it takes, and stops only
	// between groups, so once it has stopped an unanswered request was
	// never written. A caller whose ctx ends before the writer claimed its
	// request is answered at once, and the request is not written (an
	// outside review saw a 100 ms deadline wait 2.4 s behind a
	// renumbering); one claimed is being written: its answer is awaited.
	done := ctx.Done()
	for {
		select {
		case r := <-req.reply:
			return r.ev, r.err
		case <-done:
			if req.state.CompareAndSwap(tapQueued, tapAbandoned) {
				return fare.Event{}, fmt.Errorf("tap at gate %q not taken: %w", tap.Gate, ctx.Err())
			}
			done = nil // claimed: its answer comes
		case <-t.writerDone:
			select {
			case r := <-req.reply:
				return r.ev, r.err
			default:
				return fare.Event{}, ErrClosed
			}
		}
	}
}

// Decide is the decision Tap would take for tap now, without taking it: no
// sequence is used and nothing is written (a gate's "check card" button,
// tests). A face tap is decided as if the camera had identified its token.
func (t *Terminal) Decide(tap Tap) (fare.Decision, string) { return t.decide(tap) }

// ExitWhileListed is the Reason of an exit accepted from a card or face on
// the deny list: the gate lets the rider out (the journey it ends is then
// priced, not left at the maximum fare) and says it did.
const ExitWhileListed = "exit-while-listed"

// decide is the gate's local decision, no I/O: a card or face on clearing's
// deny list (the stored copy) is refused, and a card in the static seed.
// An exit is never refused for the list: the rider is inside already, and
// a closed exit gate would only keep them there (and charge their journey
// the maximum fare, its exit missing).
func (t *Terminal) decide(tap Tap) (fare.Decision, string) {
	if tap.Media != fare.Card && tap.Media != fare.Face {
		return fare.Denied, "unknown-media"
	}
	if tap.Media == fare.Face && tap.face != nil && !tap.face.accepted {
		return fare.Denied, tap.face.reason
	}
	listed := t.deny.has(fare.HashDeny(tap.Media, tap.Token)) || (tap.Media == fare.Card && t.cfg.Deny.Denied(tap.Token))
	switch {
	case listed && tap.Direction == fare.Exit:
		return fare.Accepted, ExitWhileListed
	case listed:
		return fare.Denied, "deny-list"
	case tap.Media == fare.Face:
		return fare.Accepted, "face"
	}
	if tap.face != nil {
		if !tap.face.accepted {
			return fare.Denied, tap.face.reason
		}
		return fare.Accepted, "card-holder-verified"
	}
	return fare.Accepted, "card"
}

// writeLoop is the outbox's single writer: it takes every tap waiting,
// numbers, signs and writes them in one synced transaction (group commit),
// so a busy gate pays one fsync per group rather than per passenger.
func (t *Terminal) writeLoop() {
	defer t.wg.Done()
	defer close(t.writerDone)
	reqs := make([]tapReq, 0, 256)
	for {
		select {
		case <-t.stop:
			return
		case r := <-t.taps:
			reqs = append(reqs[:0], r)
		}
	drain:
		for len(reqs) < cap(reqs) {
			select {
			case r := <-t.taps:
				reqs = append(reqs, r)
			default:
				break drain
			}
		}
		t.writeGroup(reqs)
	}
}

func (t *Terminal) writeGroup(reqs []tapReq) {
	t.seqMu.Lock()
	defer t.seqMu.Unlock()
	results := make([]tapResult, len(reqs))
	if err := t.undoFailedCommit(); err != nil {
		err = fmt.Errorf("terminal %s outbox commit: %w", t.cfg.ID, err)
		t.commitFailedNow(err)
		for i, r := range reqs {
			results[i].err = err
			r.reply <- results[i]
		}
		return
	}
	if err := t.resumeRebase(); err != nil {
		// A tap numbered now would take a sequence a moved event holds.
		err = fmt.Errorf("terminal %s: %w", t.cfg.ID, err)
		for i, r := range reqs {
			results[i].err = err
			r.reply <- results[i]
		}
		return
	}
	seq := t.lastSeq.Load()
	txn := t.db.NewTransaction(true)
	defer txn.Discard()
	now := t.tapClock()
	for i, r := range reqs {
		if err := r.ctx.Err(); err != nil || !r.state.CompareAndSwap(tapQueued, tapClaimed) {
			// The caller gave up before the tap was numbered: not
			// written, and it is told so (unless it left already).
			if err == nil {
				err = context.Canceled
			}
			r.state.Store(tapAbandoned)
			results[i].err = fmt.Errorf("tap at gate %q not taken: %w", r.tap.Gate, err)
			continue
		}
		at := r.tap.Time
		if at.IsZero() {
			at = now
		}
		dec, why := t.decide(r.tap)
		ev := fare.Event{
			ID: fare.NewEventID(at), Terminal: t.cfg.ID, Operator: t.cfg.Operator, Stop: t.cfg.Stop,
			Gate: r.tap.Gate, Direction: r.tap.Direction, Media: r.tap.Media, MediaToken: r.tap.Token,
			RiderCategory: t.deny.categoryAt(fare.HashDeny(r.tap.Media, r.tap.Token), at), DeviceTime: at.UTC(), Decision: dec, Reason: why,
			Sequence: seq + 1,
		}
		if f := r.tap.face; f != nil {
			fe := f.evidence
			ev.Face = &fe
		}
		raw, err := fare.Sign(&ev, t.cfg.Key)
		if err != nil {
			results[i].err = fmt.Errorf("tap at gate %q: %w", r.tap.Gate, err)
			continue
		}
		if err := txn.Set(outboxKey(ev.Sequence), raw); err != nil {
			results[i].err = fmt.Errorf("outbox write: %w", err)
			continue
		}
		seq++
		results[i].ev = ev
	}
	var err error
	if seq != t.lastSeq.Load() {
		if err = setU64(txn, keyLastSeq, seq); err == nil {
			err = t.commitTxn(txn)
		}
	}
	if err != nil {
		if seq != t.lastSeq.Load() {
			t.undoAbove = max(t.undoAbove, seq)
			_ = t.undoFailedCommit() // at once where the disk allows; else before the next write
		}
		err = fmt.Errorf("terminal %s outbox commit: %w", t.cfg.ID, err)
		t.commitFailedNow(err)
		for i := range results {
			if results[i].err == nil {
				results[i] = tapResult{err: err}
			}
		}
	} else {
		if f := t.commitFault.Swap(nil); f != nil {
			t.log.Info("outbox commits succeed again", "failed_since", f.since, "commits_failed", f.n.Load())
		}
		t.lastSeq.Store(seq)
		if err := t.hw.note(seq); err != nil {
			t.log.Error("outbox high-water mark", "err", err)
		}
		select {
		case t.written <- struct{}{}:
		default:
		}
	}
	for i, r := range reqs {
		r.reply <- results[i]
	}
}

// undoFailedCommit deletes what failed commits may have left readable
// above the last sequence taken (t.undoAbove) and writes the last
// sequence back, in one transaction; seqMu held. Until it succeeds no tap
// is numbered and the outbox's sequence does not move.
func (t *Terminal) undoFailedCommit() error {
	if t.undoAbove == 0 {
		return nil
	}
	last := t.lastSeq.Load()
	txn := t.db.NewTransaction(true)
	defer txn.Discard()
	for seq := last + 1; seq <= t.undoAbove; seq++ {
		if err := txn.Delete(outboxKey(seq)); err != nil {
			return fmt.Errorf("undo a failed commit: %w", err)
		}
	}
	if err := setU64(txn, keyLastSeq, last); err != nil {
		return fmt.Errorf("undo a failed commit: %w", err)
	}
	if err := t.commitTxn(txn); err != nil {
		return fmt.Errorf("undo a failed commit (the taps it refused are held back until it is undone): %w", err)
	}
	t.undoAbove = 0
	return nil
}

// commitFailedNow counts a failed commit and says it: at once, as an
// error, when commits were succeeding until then; summarised after.
func (t *Terminal) commitFailedNow(err error) {
	t.commitFailed.Inc()
	f := &commitFault{since: time.Now(), err: err.Error()}
	if old := t.commitFault.Load(); old != nil {
		f.since = old.since
		f.n.Store(old.n.Load())
		t.commitLog.Add("taps refused", err.Error())
	} else {
		t.log.Error("an outbox commit failed: its taps are refused, and the gate is not ready until a commit succeeds (a disk turned read-only or failing?); further failures are summarised", "err", err)
	}
	f.n.Add(1)
	t.commitFault.Store(f)
}

// ListsSynced is closed once, after Run first read both gate lists (the
// deny list and the enrolments) whole from clearing's buckets: the copy
// that decides is then as current as clearing's. A gate that starts can
// wait for it (bounded: offline, its stored copy decides), so a card
// listed while it was off is not let through in its first moments.
func (t *Terminal) ListsSynced() <-chan struct{} { return t.synced }

func (t *Terminal) listsSynced() {
	t.syncOnce.Do(func() {
		dv, dn := t.DenyListVersion()
		ev, en := t.EnrolmentVersion()
		t.log.Info("gate lists synced with clearing", "deny_version", dv, "denied", dn, "enrolment_version", ev, "enrolments", en)
		close(t.synced)
	})
}

// ListsLive says whether the gate follows both gate lists' feeds from
// clearing now: false offline, and while clearing refuses or does not
// serve its requests for them (its decisions then come from its last copy).
func (t *Terminal) ListsLive() bool { return t.listsLive.Load() }

// setListsLive records whether both gate lists' feeds are followed; going
// from followed to not marks the time the copy was last known current.
func (t *Terminal) setListsLive(live bool) {
	if was := t.listsLive.Swap(live); was && !live {
		t.listsLostAt.Store(time.Now().UnixNano())
	}
}

// ListsStale is how long the gate has not followed both gate lists' feeds
// (0 while it does): its copy may miss what clearing listed since. Counted
// from the gate's start when it has not followed them since.
func (t *Terminal) ListsStale() time.Duration {
	if t.listsLive.Load() {
		return 0
	}
	return time.Since(time.Unix(0, t.listsLostAt.Load()))
}

// reconnectDelay is the wait before the attempts-th attempt to reach a
// server again: quick after a blip (a node restart, a leader move), then
// backing off to 5 s, so a server that keeps refusing this gate's user is
// asked a few times a minute rather than four times a second.
func reconnectDelay(attempts int) time.Duration {
	b := newBackOff(250*time.Millisecond, 5*time.Second)
	d := b.NextBackOff()
	for range min(max(attempts-1, 0), 6) {
		d = b.NextBackOff()
	}
	return d
}

// newBackOff is the terminal's retry schedule: from first, doubling with
// ±20% jitter (gates restarted together do not retry in step), up to most.
func newBackOff(first, most time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: first, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: most}
	b.Reset()
	return b
}

// Run connects to NATS and streams the outbox until ctx is done. Events are
// published with Nats-Msg-Id = event id and sequence so JetStream drops resends inside
// its window; clearing's permanent dedup handles the rest. Without progress
// from clearing the terminal goes back to its watermark and sends again.
func (t *Terminal) Run(ctx context.Context) error {
	ctx, ran, err := t.runs.StartOnly(ctx)
	if err != nil {
		return fmt.Errorf("terminal %s: %w", t.cfg.ID, err)
	}
	defer ran()
	ctx, cancel := context.WithCancel(ctx)
	var logs sync.WaitGroup
	defer func() {
		cancel()
		logs.Wait()
	}()
	connLog := fare.NewTally(t.log, "NATS connection trouble")
	sendLog := fare.NewTally(t.log, "outbox trouble")
	for _, tally := range []*fare.Tally{t.refusals, t.denyRefusals, t.diskLog, t.commitLog, connLog, sendLog} {
		logs.Add(1)
		go func() {
			defer logs.Done()
			tally.Run(ctx, 10*time.Second)
		}()
	}
	denyKick := make(chan struct{}, 1)
	opts := append(t.NATSOptions(),
		nats.Name("faregate-terminal-"+t.cfg.ID),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		// nats.go gives up on a server that refuses the same user twice in
		// a row, for good and silently: a gate installed before its key was
		// registered, or whose user a server dropped for a moment, would
		// then never send again. A gate keeps trying, backing off.
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectHandler(func(*nats.Conn) {
			t.natsUp.Store(true)
			t.reconnected.Store(true)
			t.log.Info("reconnected to NATS")
			select {
			case denyKick <- struct{}{}: // watch the gate lists again: the copy catches up
			default:
			}
		}),
		nats.ConnectHandler(func(*nats.Conn) { // the first connection came late (RetryOnFailedConnect)
			t.natsUp.Store(true)
			select {
			case denyKick <- struct{}{}:
			default:
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			why := t.explainRefusal(err.Error())
			if t.refusesOwnEvents(err.Error()) {
				t.publishRefused.Store(&why)
			}
			connLog.Add("error", why)
		}),
		// Every failed attempt to (re)connect, the first ones included: a
		// server that refuses this terminal's user must not go unsaid while
		// taps pile up.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return
			}
			connLog.Add("connect failed", t.explainRefusal(err.Error()))
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			t.natsUp.Store(false)
			if err != nil {
				// A running gate whose key is revoked is cut off here.
				connLog.Add("disconnected", t.explainRefusal(err.Error()))
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			t.natsUp.Store(false)
			if ctx.Err() == nil { // closed while running: nothing will be sent any more
				t.log.Error("the NATS connection closed for good while the terminal runs: taps stay in the outbox until a restart", "err", nc.LastError())
			}
		}),
	)
	// A connection that cannot even be attempted (a TLS CA file not there
	// yet) is tried again, with backoff, while the gate takes taps offline:
	// the outbox keeps them, and the tally says why nothing goes out.
	var nc *nats.Conn
	retry := newBackOff(time.Second, 30*time.Second)
	for {
		wait := retry.NextBackOff()
		var err error
		if nc, err = nats.Connect(t.cfg.NATSURL, opts...); err == nil {
			t.natsUp.Store(nc.IsConnected()) // else ConnectHandler says when
			break
		}
		connLog.Add("connect failed", fmt.Sprintf("connect NATS %s: %v (taps are kept in the outbox; trying again in %s)", fare.RedactURLList(t.cfg.NATSURL), err, wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	defer func() {
		cancel() // stop the log tallies first: they must not outlive Run
		nc.Close()
	}()
	sub, err := nc.Subscribe(fare.AppliedSubject(t.cfg.ID), func(m *nats.Msg) {
		select {
		case t.marks <- m.Data:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("terminal %s: subscribe: %w", t.cfg.ID, err)
	}
	defer sub.Unsubscribe()
	// The gate lists (deny list, enrolments): watched by a goroutine of
	// its own, which stops before the connection closes.
	var denyWG sync.WaitGroup
	denyWG.Add(1)
	go func() {
		defer denyWG.Done()
		(&gateFollower{t: t, nc: nc}).follow(ctx, denyKick)
	}()
	defer func() {
		cancel()
		denyWG.Wait()
	}()

	s := sender{t: t, nc: nc, next: t.confirmed.Load() + 1, resend: newBackOff(t.cfg.ResendAfter, time.Minute), progressAt: time.Now(), log: sendLog,
		epoch: strconv.FormatUint(uint64(time.Now().UnixNano()), 36)}
	s.backoff = s.resend.NextBackOff()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	ask := time.NewTicker(time.Second)
	defer ask.Stop()
	if t.unanchored.Load() {
		s.askAnchor(ctx)
	} else {
		s.askWatermark(ctx) // at once: a restored gate learns where clearing's record ends (resign.go)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-t.marks:
			// An unanchored outbox takes its anchor only from the answer
			// to its own request (askAnchor), which only clearing can
			// send: an announcement replayed from before could put its
			// sequence behind clearing's record.
			if !t.unanchored.Load() {
				s.handle(b, nil)
			}
		case <-ask.C:
			switch {
			case t.unanchored.Load():
				s.askAnchor(ctx)
			case t.Pending() > 0 || !s.rangeSettled() || !s.askedOnce || time.Since(s.clockAt) > clockRefresh || t.clockJumped.Load() || t.reconnected.Load():
				// Also with nothing pending until clearing has said
				// whether it sends range digests: until then nothing but
				// the answer to such a request is acted on. And once a
				// run with nothing pending: a gate restored from a backup
				// learns where clearing's record of it ends before it
				// numbers a tap (resign.go).
				s.askWatermark(ctx)
				// Narrowing down conflicts (a restored outbox), ask again
				// as often as clearing answers (five a second): one
				// conflicting tap is signed again per answer.
				for i := 0; i < 4 && s.narrow.hi != 0 && ctx.Err() == nil; i++ {
					select {
					case <-ctx.Done():
					case <-time.After(210 * time.Millisecond):
						s.askWatermark(ctx)
					}
				}
			}
		case <-t.written:
		case <-tick.C:
		}
		if t.unanchored.Load() {
			continue // nothing goes out before clearing says where the sequence stands
		}
		if err := s.send(); err != nil {
			sendLog.Add("publish", err.Error())
		}
	}
}

// sender is Run's state; only Run's goroutine touches it.
type sender struct {
	t          *Terminal
	nc         *nats.Conn
	next       uint64 // next sequence to publish
	backoff    time.Duration
	progressAt time.Time
	// resend schedules the resends of unconfirmed events: backoff is how
	// long to wait for progress before going back to the watermark.
	resend    *backoff.ExponentialBackOff
	gapAt     time.Time
	seenLinks map[[32]byte]bool // rotation links already acted on
	round     uint64            // resend rounds since start, part of resent messages' ids
	// heardAt is when clearing last sent a confirmation that verified;
	// probing says the round begun at roundAt sends its first event only,
	// clearing having been silent, until clearing is heard from again.
	heardAt time.Time
	roundAt time.Time
	// clockAt is when the gate last read clearing's clock from an answer
	// to its own request (readClock).
	clockAt time.Time
	probing bool
	epoch   string      // this run's mark in resent messages' ids (see send)
	log     *fare.Tally // gaps, corrupt entries and publish errors, summarised
	nonce   []byte      // the nonce of an unanchored outbox's last request (anchor.go)
	// rangeWarned is the watermark+1 of the last range mismatch logged as
	// an error (once per watermark; the refusals tally counts them all);
	// missingWarned says errRangeMissing was logged.
	rangeWarned   uint64
	missingWarned bool
	// legacyClearing: clearing answered this run's request for a range
	// digest without one (an older build): plain confirmations are taken.
	legacyClearing bool
	// narrow is a range whose digest did not match, being narrowed down
	// (hi: the first watermark known not to match; 0: none): requests ask
	// for half of it, what matches is confirmed, and the one sequence
	// where clearing holds another event goes to the dead letters.
	narrow struct{ hi uint64 }
	// advised are the rejection reasons already logged as the gate's own
	// misconfiguration (adviseRejections).
	advised map[string]bool
	// askedOnce: this run asked clearing where its record of the terminal
	// stands at least once.
	askedOnce bool
	// behindWarned: clearing holding less than it confirmed was logged.
	behindWarned bool
	// clearing is where clearing's record of this terminal stood at the
	// last answer to its own request this run: its watermark (exact: at
	// it; else at least it), for the stand-ins of entries given up, sent
	// only where clearing holds nothing.
	clearing struct {
		known, exact bool
		at           uint64
	}
}

func (s *sender) askWatermark(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req := nats.NewMsg(fare.WatermarkSubject(s.t.cfg.ID))
	// A nonce binds the answer to this request, so its time, and the
	// round trip around it, can set the gate's tap clock (followClock):
	// an answer replayed from before cannot.
	ans := &answer{nonce: make([]byte, anchorNonceSize)}
	if _, err := rand.Read(ans.nonce); err != nil {
		ans.nonce = nil // answered all the same; its time only read
	}
	req.Data = fare.WatermarkRequest(s.t.confirmed.Load(), ans.nonce)
	req.Header.Set(fare.WantRangeHeader, "1") // this gate checks whole ranges
	heads := s.t.deny.headValues()
	for i, h := range [2]string{fare.DenyHeadHeader, fare.EnrolHeadHeader} {
		if v := heads[i]; v != nil {
			req.Header.Set(h, base64.StdEncoding.EncodeToString(v))
		}
	}
	lo, upto := s.t.confirmed.Load(), uint64(0)
	if s.narrow.hi > lo {
		// Narrowing a range that did not match: half of it (at last the
		// one sequence, to learn clearing's event there).
		upto = lo + max(1, (s.narrow.hi-lo)/2)
	}
	if from := s.t.skipFrom.Load(); s.t.skipTo.Load() != 0 && lo < from && (upto == 0 || upto > from) {
		upto = from // this outbox's own events, short of the sequences clearing holds of another unit
	}
	if upto != 0 {
		req.Header.Set(fare.ConfirmUptoHeader, strconv.FormatUint(upto, 10))
	}
	if s.t.cfg.FaceHead != nil {
		if v := s.t.cfg.FaceHead(); v != nil {
			req.Header.Set(fare.FaceHeadHeader, base64.StdEncoding.EncodeToString(v))
		}
	}
	ans.upto = upto
	ans.sent, ans.sentMono = s.t.cfg.Now(), time.Now()
	m, err := s.nc.RequestMsgWithContext(rctx, req)
	if err != nil {
		return // clearing unreachable: keep the outbox, try later
	}
	ans.received, ans.receivedMono = s.t.cfg.Now(), time.Now()
	s.askedOnce = true
	s.handle(m.Data, ans)
}

// answer is what a gate knows of its own request whose answer it handles:
// the nonce it sent and its clock's time when it sent the request and when
// the answer came.
type answer struct {
	// upto is the request's cap on the confirmation (0: none): an answer
	// at it says clearing's record reaches at least that far.
	upto           uint64
	nonce          []byte
	sent, received time.Time
	// sentMono and receivedMono are time.Now() then, for their monotonic
	// readings: the round trip is timed on them (a gate clock stepped
	// while the request was out does not make it an hour long).
	sentMono, receivedMono time.Time
}

// rangeSettled says whether the outbox knows how clearing confirms it:
// with range digests (recorded in its store), or not at all (an older
// clearing answered its request without one).
func (s *sender) rangeSettled() bool { return s.t.rangeChecked.Load() || s.legacyClearing }

// askAnchor asks clearing, for an unanchored outbox, for its record of
// this terminal from the start (anchor.go).
func (s *sender) askAnchor(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s.nonce = make([]byte, anchorNonceSize)
	if _, err := rand.Read(s.nonce); err != nil {
		s.t.log.Error("anchoring request: no randomness for its nonce", "err", err)
		return
	}
	m, err := s.nc.RequestWithContext(rctx, fare.WatermarkSubject(s.t.cfg.ID), fare.WatermarkRequest(0, s.nonce))
	if err != nil {
		return // clearing unreachable: taps wait in the outbox, ask again
	}
	s.anchor(m.Data)
}

// Reasons a confirmation is refused (the refusals metric's labels).
const (
	RefusedUntrusted = "untrusted"      // no provisioned clearing key signed it
	RefusedMalformed = "malformed"      // not a confirmation at all
	RefusedOther     = "other-terminal" // names another terminal
	RefusedBeyond    = "beyond-outbox"  // confirms sequences never written
	RefusedDigest    = "digest-mismatch"
	RefusedNonce     = "nonce-mismatch" // an anchoring answer that does not echo the request's nonce
	// RefusedRange: clearing recorded other events than this outbox's
	// under sequences the confirmation covers (its range digest differs).
	RefusedRange = "range-mismatch"
	// RefusedRangeMissing: clearing, asked for range digests, answered
	// without one, to an outbox that has had them.
	RefusedRangeMissing = "range-missing"
	// RefusedBehind: clearing's answer holds less of this terminal than it
	// confirmed before (clearing lost confirmed events).
	RefusedBehind = "clearing-behind"
)

var refusalReasons = []string{RefusedUntrusted, RefusedMalformed, RefusedOther, RefusedBeyond, RefusedDigest, RefusedNonce, RefusedRange, RefusedRangeMissing, RefusedBehind}

func (s *sender) refuse(reason, detail string) {
	s.t.refused.Add(1)
	s.t.refusedBy.WithLabelValues(reason).Inc()
	s.t.refusals.Add(reason, detail)
}

// verified opens a bundled confirmation, learns the rotations ahead of it
// and checks it against the provisioned clearing keys and this terminal's
// id; anything else is refused and counted (ok false).
func (s *sender) verified(msg []byte) (c *fare.Confirmation, ok bool) {
	rotations, b, err := fare.Unbundle(msg)
	if err != nil {
		s.refuse(RefusedMalformed, err.Error())
		return nil, false
	}
	s.learn(rotations)
	c, err = fare.VerifyConfirmation(b, s.t.cfg.ClearingKeys)
	switch {
	case errors.Is(err, fare.ErrUntrustedConfirmation):
		s.refuse(RefusedUntrusted, err.Error())
		return nil, false
	case err != nil:
		s.refuse(RefusedMalformed, err.Error())
		return nil, false
	case c.Terminal != s.t.cfg.ID:
		s.refuse(RefusedOther, fmt.Sprintf("confirmation for terminal %s", c.Terminal))
		return nil, false
	}
	return c, true
}

// handle acts on a signed confirmation, an announcement (ans nil) or the
// answer to this terminal's own request: verified against the provisioned
// clearing keys, for this terminal, matching this outbox's own event at the
// watermark. Anything else is ignored and counted; an old confirmation
// (watermark already passed) is simply stale.
func (s *sender) handle(msg []byte, ans *answer) {
	t := s.t
	own := ans != nil
	c, ok := s.verified(msg)
	if !ok {
		return
	}
	s.heardAt = time.Now()
	if c.Watermark > t.confirmed.Load() {
		t.publishRefused.Store(nil) // taps reach clearing
	}
	if own {
		s.readClock(c, ans)
		s.clearing.known = true
		s.clearing.at = c.Watermark
		s.clearing.exact = ans.upto == 0 || c.Watermark < ans.upto
	}
	if c.Watermark > t.lastSeq.Load() && own {
		// Clearing's record of this terminal runs past the outbox: it was
		// restored from a backup, or another unit signs with its key. The
		// taps it takes next are numbered after clearing's record
		// (resign.go); its own pending events are checked as always.
		last := t.lastSeq.Load()
		moved, err := t.skipPast(c.Watermark)
		if err != nil && !errors.Is(err, errNoRoom) {
			t.log.Error("outbox sequence", "err", err)
		}
		if moved {
			t.log.Error("clearing holds events of this terminal up to a sequence past this outbox's last (its outbox restored from a backup, or a second unit signing with its key): the taps it takes from now are numbered after clearing's record",
				"outbox_last", last, "clearing_watermark", c.Watermark, "pending", t.Pending())
			if err := t.passSkip(); err != nil {
				t.log.Error("outbox sequence", "err", err)
			}
			if s.next <= t.confirmed.Load() {
				s.next = t.confirmed.Load() + 1
			}
			return
		}
	}
	if c.Watermark > t.lastSeq.Load() {
		s.refuse(RefusedBeyond, fmt.Sprintf("confirms up to %d, outbox ends at %d: clearing holds sequences this outbox never signed (a second unit with this terminal's key, or this outbox restored from a backup: events signed under sequences clearing already holds are refused there as sequence-conflict)", c.Watermark, t.lastSeq.Load()))
		return
	}
	conf := t.confirmed.Load()
	if c.Highest > c.Watermark && c.Watermark == conf && s.next > conf+1 && time.Since(s.gapAt) > max(time.Second, s.backoff) {
		// Clearing holds later sequences than its watermark: one went
		// missing on the way. Send again from the first it lacks, backing
		// off while the watermark stays put: a sequence clearing holds back
		// (dated a day ahead) would otherwise have the whole backlog resent
		// every second.
		s.gapAt = time.Now()
		s.next = conf + 1
		s.round++
		s.backoff = s.resend.NextBackOff()
		s.log.Add("gap", fmt.Sprintf("clearing reports a gap: resending from %d (clearing holds up to %d)", conf+1, c.Highest))
	}
	if own && c.Watermark < conf {
		// Clearing's record of this terminal ends below what it confirmed
		// here: the events in between were deleted on its confirmation and
		// cannot be sent again. Said, once per run: the gate is otherwise
		// stuck in silence, resending what clearing drops as duplicates.
		s.refuse(RefusedBehind, fmt.Sprintf("clearing holds this terminal's sequences up to %d (highest %d), below the %d it confirmed to this gate", c.Watermark, c.Highest, conf))
		if !s.behindWarned {
			s.behindWarned = true
			t.log.Error("clearing's record of this terminal ends below what it confirmed to this gate: clearing lost events it had confirmed (its store restored from a backup, or an older copy of it running); they were deleted here on confirmation and cannot be sent again, and clearing waits for them: see `faregate ledger audit`",
				"clearing_watermark", c.Watermark, "clearing_highest", c.Highest, "confirmed_here", conf)
		}
		return
	}
	if c.Watermark <= conf || c.From > conf {
		return // stale, or it starts past what we know: the next request covers it
	}
	if t.skipTo.Load() != 0 && conf < t.skipFrom.Load() && c.Watermark > t.skipFrom.Load() {
		return // it covers sequences clearing holds of another unit: the next request stops short of them
	}
	if err := s.confirm(c, conf, own); err != nil {
		var mm digestMismatch
		if errors.As(err, &mm) {
			s.refuse(RefusedDigest, err.Error())
			return
		}
		var rm rangeMismatch
		if errors.As(err, &rm) {
			if own && (s.narrow.hi == 0 || rm.to < s.narrow.hi) {
				s.narrow.hi = rm.to // the next request asks for half of it
			}
			if rm.standIn != 0 {
				if s.rangeWarned != rm.from+1 {
					s.rangeWarned = rm.from + 1
					t.log.Info(err.Error(), "from", rm.from, "to", rm.to)
				}
				return
			}
			s.refuse(RefusedRange, err.Error())
			if s.rangeWarned != rm.from+1 { // once per watermark it is stuck at
				s.rangeWarned = rm.from + 1
				t.log.Error("confirmation refused: "+err.Error(), "from", rm.from, "to", rm.to)
			}
			return
		}
		if errors.Is(err, errRangeMissing) {
			s.refuse(RefusedRangeMissing, err.Error())
			if !s.missingWarned {
				s.missingWarned = true
				t.log.Error("confirmation refused: " + err.Error())
			}
			return
		}
		if errors.Is(err, errRangeElsewhere) {
			return
		}
		if !errors.Is(err, errNoRoom) { // said by the disk tally
			t.log.Error("outbox confirm", "watermark", c.Watermark, "err", err)
		}
		return
	}
	if err := t.passSkip(); err != nil {
		t.log.Error("outbox sequence", "err", err)
	}
	if s.next <= t.confirmed.Load() {
		s.next = t.confirmed.Load() + 1
	}
	s.progressAt = time.Now()
	if s.narrow.hi != 0 && t.confirmed.Load() >= s.narrow.hi {
		s.narrow.hi = 0
	}
	t.confirmedAt.Store(s.progressAt.UnixNano())
	s.resend.Reset()
	s.backoff = s.resend.NextBackOff()
}

// clockWarnAfter is how far the gate's clock may be off clearing's before
// the gate says so in its log (the gauge shows any offset) and stops
// following clearing's (followClock).
const clockWarnAfter = 5 * time.Minute

// clockTolerance is how far beyond the round trip's uncertainty a gate's
// clock may be off clearing's before the gate stamps taps on clearing's.
const clockTolerance = 2 * time.Second

// clockRefresh is how often a gate with nothing to send still asks
// clearing for its watermark, to keep its tap clock (followClock) current.
const clockRefresh = 10 * time.Minute

// readClock reads how far the gate's clock is from clearing's from the
// answer to its own request, issued while the gate waited for it.
// Clearing holds taps dated a day ahead and rejects those a month back;
// the log says so before it happens. An answer bound to the request by its
// nonce also sets the gate's tap clock (followClock, and below).
//
// Which clock moved is told by the gate's own, carried on from the anchor
// (clockAnchor) by its monotonic clock: clearing's drift since is how far
// clearing's clock moved against it. The gate follows clearing's while
// that drift is within clockWarnAfter, however far its own wall clock was
// stepped meanwhile; a clearing clock that jumped or crept further is not
// followed, so it never re-dates a gate's taps by more than that (an
// outside recheck saw a synced gate follow a clearing jump of days, and a
// clearing creeping 4 minutes an answer for hours). With no anchor (the
// first answer since the gate started) the gate follows clearing's within
// clockWarnAfter of its own, or when its own is so far off that clearing
// would hold or reject every tap it stamps; else it shows the offset.
func (s *sender) readClock(c *fare.Confirmation, ans *answer) {
	t := s.t
	s.clockAt = time.Now() // asked, whatever the answer says (clockRefresh)
	t.reconnected.Store(false)
	bound := len(ans.nonce) > 0 && bytes.Equal(c.Nonce, ans.nonce) && !ans.received.Before(ans.sent) && !ans.receivedMono.Before(ans.sentMono)
	at, half, mid := ans.received, time.Duration(0), ans.receivedMono
	if bound {
		half = ans.receivedMono.Sub(ans.sentMono) / 2
		at, mid = ans.received.Add(-half), ans.receivedMono.Add(-half)
	}
	off := at.Sub(c.IssuedAt)
	was := t.ClockCorrection()
	corr := was
	if bound {
		within := func(d, limit time.Duration) bool { return d <= limit && d >= -limit }
		k := t.kept.Load()
		var drift time.Duration // clearing's clock's move against the gate's own since the anchor
		if k != nil {
			drift = k.wall.Add(mid.Sub(k.mono)).Add(-k.off).Sub(c.IssuedAt)
		}
		anchor := &clockAnchor{wall: at.Round(0), mono: mid, off: off} // wall: the wall reading alone (tapClock)
		switch {
		case within(off, half+clockTolerance):
			corr = 0 // right: its own clock
		case k != nil && within(drift, clockWarnAfter):
			// Measured from the anchor, not a new one: a clearing clock
			// creeping a little at each answer was followed without bound
			// when each answer moved it (an outside recheck: 30 minutes
			// in a month).
			corr, anchor = off, k
			if was == 0 && !within(off, clockWarnAfter) {
				t.log.Warn("the gate's clock moved since clearing's last answer, and clearing's did not: it stamps its taps on clearing's clock; set the gate's clock (NTP)",
					"offset", off.Round(time.Millisecond).String())
			}
		case k != nil && farOff(k.off) && farOff(off):
			// The gate's own clock is hopeless (no battery): clearing's is
			// followed whatever clearing's did meanwhile (set right by its
			// operator), from a new anchor.
			corr = off
		case k == nil && within(off, clockWarnAfter):
			corr = off
		case k == nil && farOff(off):
			// A clock so far off that clearing would hold or reject every
			// tap it stamps (a gate without a clock battery, booted
			// before its time source): clearing's is the only one that
			// loses nothing (an outside test saw every rider of a gate
			// 400 days behind travel free).
			corr = off
		default:
			// Broken: the gate's clock at start, or clearing's since.
			corr, anchor = 0, k
		}
		if corr == 0 {
			t.follow.Store(nil)
		} else {
			// Clearing's time as the answer came: issued half way through.
			t.follow.Store(&clockFollow{at: c.IssuedAt.Add(half), mono: ans.receivedMono})
		}
		t.kept.Store(anchor)
		t.clockJumped.Store(false)
	} // else an older clearing that echoes no nonce: the offset is only shown
	t.clockOffset.Store(int64(off))
	if corr == 0 && (off > clockWarnAfter || off < -clockWarnAfter) {
		s.log.Add("clock-offset", fmt.Sprintf("the gate's clock is %s off clearing's (positive: ahead): the gate stamps taps with its own clock, clearing holds taps dated more than a day ahead and rejects those more than 30 days back; set the gate's clock (NTP), or clearing's if it is the one that moved", off.Round(time.Second)))
	}
	if !bound {
		return
	}
	if corr != 0 && (was == 0 || (corr-was).Abs() > time.Second) {
		t.log.Warn("the gate's clock is off clearing's: it stamps its taps on clearing's clock; set the gate's clock (NTP)",
			"offset", off.Round(time.Millisecond).String(), "round_trip", (2 * half).Round(time.Millisecond).String())
	}
}

// errRangeElsewhere: a confirmation this outbox does not act on but that
// is no fault (see confirm); not counted.
var errRangeElsewhere = errors.New("confirmation without a range this outbox can check")

// errRangeMissing: the answer to a request for a range digest came without
// one, to an outbox that has had them (clearing rolled back to an older
// build): refused, and said, since the gate drains no more.
var errRangeMissing = errors.New("clearing answered without a range digest, which this outbox has had and requires: is clearing an older build than before? the gate drains no more until it is upgraded again")

// rangeMismatch: clearing recorded, under some sequence of (from, to],
// another event than this outbox's.
// standIn is the sequence of the first stand-in for an entry given up
// (GiveUpDamaged) in the range, 0 if none: clearing holding the tap itself
// there is expected, no alarm.
type rangeMismatch struct{ from, to, standIn uint64 }

func (r rangeMismatch) Error() string {
	if r.standIn != 0 {
		return fmt.Sprintf("clearing recorded other events than this outbox's under sequences in (%d, %d], where entry %d stands in for a damaged entry given up: clearing may hold the tap itself (applied before the disk damaged it); narrowing down", r.from, r.to, r.standIn)
	}
	return fmt.Sprintf("clearing recorded other events than this outbox's under sequences in (%d, %d]: a second unit signing with this terminal's key, this outbox restored from a backup, or a forged event applied under its sequence; nothing is deleted (the events stay in the outbox); check `faregate ledger audit` and clearing's sequence-conflict quarantine", r.from, r.to)
}

type digestMismatch struct{ seq uint64 }

func (d digestMismatch) Error() string {
	return fmt.Sprintf("confirmation's digest at sequence %d is not this outbox's event", d.seq)
}

// DeadLetter is an event clearing rejected for good, kept by the terminal
// for its operator to inspect.
type DeadLetter struct {
	Sequence uint64 `json:"sequence"`
	Reason   string `json:"reason"`
	// Mismatch is set when clearing's record under this sequence is another
	// message than this terminal's event.
	Mismatch   bool      `json:"digest_mismatch,omitempty"`
	RejectedAt time.Time `json:"rejected_at"`
	// Event is the signed event, 0x hex.
	Event string `json:"event"`
}

// confirm moves (conf, c.Watermark] out of the outbox: rejected sequences
// into the dead-letter area, the rest deleted. The confirmation's digest is
// checked against this outbox's event at the watermark first; the moves go
// in steps of bounded transactions, each advancing the stored watermark.
func (s *sender) confirm(c *fare.Confirmation, conf uint64, own bool) error {
	t := s.t
	switch {
	case c.HasRange && c.From != conf:
		return errRangeElsewhere // cannot be checked from here: the answer to its own request will be
	case !c.HasRange && t.rangeChecked.Load():
		if own { // clearing was asked for a range and gave none: rolled back to an older build?
			return errRangeMissing
		}
		return errRangeElsewhere // an announcement of a clearing that does not know yet: the answer to its own request will do
	case !c.HasRange && !s.legacyClearing:
		if !own {
			// Whether clearing checks ranges is learnt only from the
			// answer to a request that asks for them: a plain
			// announcement (after a clearing restart, or a resend's)
			// must not confirm a range unchecked meanwhile.
			return errRangeElsewhere
		}
		s.legacyClearing = true
		t.log.Warn("clearing answers without range digests (a build older than this terminal's): confirmations are checked at their watermark only, so an event clearing holds from another unit under one of this gate's sequences would go unseen; upgrade clearing")
	}
	err := t.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(outboxKey(c.Watermark))
		if err != nil {
			return fmt.Errorf("outbox entry %d: %w", c.Watermark, err)
		}
		if !c.HasRange {
			return item.Value(func(raw []byte) error {
				if fare.EventDigest(raw) != c.Digest {
					return digestMismatch{c.Watermark}
				}
				return nil
			})
		}
		// The whole range: every event clearing recorded under these
		// sequences must be this outbox's.
		rh := fare.NewRangeHash(conf)
		for seq := conf + 1; seq <= c.Watermark; seq++ {
			raw, err := readOutboxEntry(txn, seq)
			if err != nil {
				return err
			}
			if err := rh.Add(seq, fare.EventDigest(raw)); err != nil {
				return err
			}
		}
		if rh.Sum() != c.RangeDigest {
			rm := rangeMismatch{from: conf, to: c.Watermark}
			for seq := conf + 1; seq <= c.Watermark && rm.standIn == 0; seq++ {
				raw, err := readOutboxEntry(txn, seq)
				if err != nil {
					return err
				}
				// Decoded first, verified only if it looks like one: a
				// restored outbox's range may be long, and is checked at
				// each answer while it narrows down.
				if ev, err := fare.Decode(raw); err == nil && standIn(&ev.Event) && ev.Verify(t.PublicKey()) == nil {
					rm.standIn = seq
				}
			}
			return rm
		}
		return nil
	})
	var rm rangeMismatch
	if errors.As(err, &rm) && own && c.Watermark == conf+1 && s.narrow.hi != 0 {
		// Narrowed down to one sequence: clearing holds another event
		// under it (its digest at the watermark, whose range digest it
		// signed). This gate's event there was never applied: it goes to
		// the dead letters, and the outbox moves past it.
		one := fare.NewRangeHash(conf)
		if one.Add(c.Watermark, c.Digest) == nil && one.Sum() == c.RangeDigest {
			return s.conflictAt(c.Watermark, c.Digest)
		}
	}
	if err != nil {
		return err
	}
	// Writing into the store's mapped files on a full disk kills the
	// process (SIGBUS). Below the floor the confirmation is not recorded:
	// the events stay in the outbox and are sent again, and clearing's
	// next confirmation is recorded once there is room (clearing drops
	// what it already has).
	if err := t.room.checkAbove(time.Now(), openFloor); err != nil {
		t.diskLog.Add("confirmation not recorded", err.Error())
		return errNoRoom
	}
	if c.HasRange && !t.rangeChecked.Load() {
		if err := t.db.Update(func(txn *badger.Txn) error { return txn.Set(keyRangeChecked, nil) }); err != nil {
			return err
		}
		t.rangeChecked.Store(true)
	}
	rejected := make(map[uint64]fare.Rejection, len(c.Rejected))
	for _, r := range c.Rejected {
		rejected[r.Sequence] = r
	}
	now := t.cfg.Now().UTC()
	const step = 2000
	for from := conf; from < c.Watermark; {
		to := min(from+step, c.Watermark)
		var nrej, written uint64
		recorded := false
		err := t.update(false, func(txn *badger.Txn) error {
			for seq := from + 1; seq <= to; seq++ {
				if r, ok := rejected[seq]; ok {
					raw, err := readOutboxEntry(txn, seq)
					if err != nil {
						return err
					}
					dl := DeadLetter{Sequence: seq, Reason: r.Reason, Mismatch: fare.EventDigest(raw) != r.Digest, RejectedAt: now, Event: "0x" + hex.EncodeToString(raw)}
					b, err := json.Marshal(dl)
					if err != nil {
						return err
					}
					if err := txn.Set(deadLetterKey(seq), b); err != nil {
						return err
					}
					nrej++
				}
				if err := txn.Delete(outboxKey(seq)); err != nil {
					return err
				}
			}
			if to-from > nrej && !t.operatorApplied.Load() {
				// Clearing applied an event of this gate's, naming the
				// operator it runs with (its pending events were signed
				// naming it at open): that operator is the registration's,
				// unless one is recorded already (conflictAt's, found
				// from clearing's own record).
				had, err := getString(txn, keyOperatorApplied)
				if err != nil {
					return err
				}
				if had == "" {
					if err := txn.Set(keyOperatorApplied, []byte(t.cfg.Operator)); err != nil {
						return err
					}
				}
				recorded = had == "" || had == t.cfg.Operator
			}
			var err error
			written, err = t.confirmIn(txn, to)
			return err
		})
		if err != nil {
			return err
		}
		if recorded {
			t.operatorApplied.Store(true)
		}
		t.confirmedTo(written)
		// The newest tap says whether the gate is set up wrong now:
		// rejected for the gate's own sake, or applied (fixed).
		if r, ok := rejected[to]; !ok {
			t.rejectedGate.Store(nil)
		} else if why := t.gateFault(r.Reason); why != "" {
			t.rejectedGate.Store(&why)
		}
		if nrej > 0 {
			s.adviseRejections(rejected, from, to)
			t.rejected.Add(nrej)
			// Summarised: a misconfigured gate has every tap rejected.
			s.log.Add("rejected-by-clearing", fmt.Sprintf("clearing rejected %d event(s) up to sequence %d; kept in the dead-letter store (faregate terminal rejected)", nrej, to))
		}
		if s.next <= written {
			s.next = written + 1
		}
		from = to
	}
	return nil
}

// adviseRejections logs, once per reason and run, an error for rejections
// that say the gate itself is set up wrong (its --stop or --operator is
// not what the ledger registered, or it was revoked): every tap it takes
// will be refused the same way, though the gate opened for it.
func (s *sender) adviseRejections(rejected map[uint64]fare.Rejection, from, to uint64) {
	for seq, r := range rejected {
		if seq <= from || seq > to || s.advised[r.Reason] {
			continue
		}
		why := s.t.gateFault(r.Reason)
		if why == "" {
			continue
		}
		if s.advised == nil {
			s.advised = map[string]bool{}
		}
		s.advised[r.Reason] = true
		s.t.log.Error("clearing rejects this gate's taps for good: "+why+"; every tap it takes is refused the same way (check `faregate ledger status`; the rejected events are in `faregate terminal rejected`)",
			"reason", r.Reason, "sequence", seq)
	}
}

// loadRejectedGate restores, at open, the gate's not-ready state of its
// last life: the newest confirmed tap (conf) rejected for the gate's own
// sake (an outside test restarted a revoked gate and saw it ready until
// its next tap came back rejected). A stop or operator rejection counts
// only if the gate still runs with the stop or operator that tap was
// signed with: a restart with them put right is the fix.
func (t *Terminal) loadRejectedGate(txn *badger.Txn, conf uint64) error {
	if conf == 0 {
		return nil
	}
	item, err := txn.Get(deadLetterKey(conf))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	// The state is advice: a dead letter that does not read (a damaged
	// disk) leaves the gate ready, never keeps it from opening.
	var dl DeadLetter
	var value []byte
	if item.Value(func(v []byte) error { value = slices.Clone(v); return nil }) != nil {
		return nil
	}
	if json.Unmarshal(value, &dl) != nil {
		return nil
	}
	raw, err := hex.DecodeString(strings.TrimPrefix(dl.Event, "0x"))
	if err != nil {
		return nil
	}
	ev, err := fare.Decode(raw)
	if err != nil || ev.Stop != t.cfg.Stop || ev.Operator != t.cfg.Operator {
		return nil
	}
	if why := t.gateFault(dl.Reason); why != "" {
		t.rejectedGate.Store(&why)
	}
	return nil
}

// gateFault says what is wrong with the gate itself when clearing rejects
// its taps for reason ("" for a reason about the tap, not the gate).
func (t *Terminal) gateFault(reason string) string {
	switch reason {
	case "stop-mismatch":
		return fmt.Sprintf("the ledger registered terminal %s at another stop than --stop %s", t.cfg.ID, t.cfg.Stop)
	case "operator-mismatch":
		return fmt.Sprintf("the ledger registered terminal %s for another operator than --operator %s", t.cfg.ID, t.cfg.Operator)
	case "terminal-revoked":
		return fmt.Sprintf("its operator revoked terminal %s on the ledger", t.cfg.ID)
	}
	return ""
}

// ReasonSequenceConflict is the dead-letter reason of an event under whose
// sequence clearing applied another event, and which could not be signed
// again under a new one (conflictAt: a damaged entry; builds before
// renumbering kept every such event).
const ReasonSequenceConflict = "sequence-conflict"

// DeadLetters lists the events clearing rejected, by sequence.
func (t *Terminal) DeadLetters() ([]DeadLetter, error) { return readDeadLetters(t.db) }

// ReadDeadLetters opens a stopped terminal's store in dir and lists its dead
// letters.
func ReadDeadLetters(dir string) ([]DeadLetter, error) {
	if !HasOutbox(dir) {
		return nil, fmt.Errorf("%s holds no terminal outbox (no MANIFEST there): give the terminal's --data", dir)
	}
	// Said as what it is (an outside test was told to stop a terminal that
	// was stopped): a running gate, a store another user owns, or one a
	// crash left, which the gate's next start repairs.
	if fare.DirLocked(dir) {
		return nil, fmt.Errorf("the terminal's store in %s is open in another process: stop the terminal first", dir)
	}
	opts := storeOptions(dir).WithReadOnly(true)
	if err := storecheck.Access(dir, true); err != nil {
		return nil, err
	}
	if unclean, why := storeUnclean(dir); unclean || len(storecheck.EmptyLogs(dir)) > 0 {
		if why == nil {
			why = errors.New("log files created and never written")
		}
		return nil, fmt.Errorf("%w (%s: %v): start the terminal once, which repairs it, keeping a copy aside and checking that no accepted tap was lost, then stop it and read its dead letters", ErrStoreUnclean, dir, why)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open terminal store %s read-only: %w", dir, err)
	}
	defer db.Close()
	return readDeadLetters(db)
}

func readDeadLetters(db *badger.DB) ([]DeadLetter, error) {
	var out []DeadLetter
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pDeadLetter}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var dl DeadLetter
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &dl) }); err != nil {
				return fmt.Errorf("dead letter %x: %w", it.Item().Key(), err)
			}
			out = append(out, dl)
		}
		return nil
	})
	return out, err
}

// maxPerRound bounds publishes per wake-up so confirmations interleave.
const maxPerRound = 2048

func (s *sender) send() error {
	t := s.t
	conf := t.confirmed.Load()
	if conf < t.lastSeq.Load() && s.next > conf+1 && time.Since(s.progressAt) > s.backoff {
		// Sent but unconfirmed for too long: go back to the watermark.
		// If clearing said nothing all that time (it answers the
		// watermark request every second when it runs), it is down and
		// the stream keeps what was sent: the first event alone goes, as
		// a probe, and the rest once clearing is heard from again. (A
		// whole outbox every minute of an hour's outage would be sixty
		// copies of each event in the stream.)
		s.probing = time.Since(s.heardAt) > s.backoff
		s.next = conf + 1
		s.round++
		s.progressAt = time.Now()
		s.roundAt = s.progressAt
		s.backoff = s.resend.NextBackOff()
		if s.probing {
			t.probes.Add(1)
		}
	}
	if s.probing {
		if s.heardAt.After(s.roundAt) {
			s.probing = false // clearing answers again: the round goes on
		} else if s.next > conf+1 {
			return nil
		}
	}
	last := t.lastSeq.Load()
	if s.next > last || !s.nc.IsConnected() {
		return nil
	}
	var perr error
	err := t.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pOutbox}})
		defer it.Close()
		n := 0
		limit := maxPerRound
		if s.probing {
			limit = 1
		}
		for it.Seek(outboxKey(s.next)); it.Valid() && n < limit; it.Next() {
			seq := binary.BigEndian.Uint64(it.Item().Key()[1:])
			if seq > last {
				// Only what a commit that returned holds: Badger shows a
				// transaction's entries to readers even when its sync then
				// failed, and the taps of that group were refused (their
				// sequences go to the next ones).
				break
			}
			raw, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			// An entry is checked against this terminal's own key before it
			// goes: one the disk corrupted is named here, not sent for
			// clearing to quarantine as a forgery. It is skipped (clearing
			// waits for its sequence: the gap stays, and says where).
			ev, err := t.ownEvent(raw)
			if err != nil {
				t.corrupt.Inc()
				t.corruptN.Add(1)
				s.log.Add("corrupt-entry", fmt.Sprintf("outbox entry %d is corrupt (%v): not sent; clearing keeps a gap at sequence %d, and the later taps wait in the outbox, until it is given up (stop the gate, then faregate terminal give-up --sequence %d)", seq, err, seq, seq))
				s.next = seq + 1
				continue
			}
			if standIn(&ev.Event) {
				// A stand-in for an entry given up goes only where
				// clearing holds nothing: it may hold the tap itself,
				// applied before the disk damaged it, and the stand-in
				// would be quarantined there as a second event under its
				// sequence. Where it holds the sequence, the
				// confirmations settle it (conflictAt drops a stand-in);
				// until clearing is known to stand just below it, the
				// round stops here.
				switch c := s.clearing; {
				case c.known && c.at >= seq:
					s.next = seq + 1
					continue
				case c.known && c.exact && c.at == seq-1:
				default:
					return nil
				}
			}
			m := nats.NewMsg(fare.EventSubject(t.cfg.Operator, t.cfg.ID))
			m.Data = raw
			// A resend gets a fresh message id: JetStream's duplicate window
			// remembers ids even of messages since deleted, and would drop
			// the very copy clearing is missing. Clearing's own dedup is
			// permanent, by terminal and sequence. The run's epoch keeps a
			// restarted terminal's resends from reusing the ids of its
			// previous run's, which the window may still hold.
			// The sequence is part of it: an event signed again under a
			// new one (resign.go) is another message.
			id := ev.ID.String() + "." + strconv.FormatUint(seq, 10)
			if s.round > 0 {
				id += "." + s.epoch + "." + strconv.FormatUint(s.round, 10)
			}
			m.Header.Set(nats.MsgIdHdr, id)
			// A plain publish: the event stream acknowledges nothing (an
			// ack's reply subject is the publisher's to name, so acks would
			// let one terminal fill another's share of the stream). What
			// says an event arrived is clearing's signed confirmation; until
			// it comes the event stays in the outbox and goes again.
			if err := s.nc.PublishMsg(m); err != nil {
				perr = err
				return nil
			}
			t.published.Add(1)
			s.next = seq + 1
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	return perr
}

// Close stops Run, if it is running, and waits for it; then it stops the
// writer and closes the outbox.
func (t *Terminal) Close() error {
	t.runs.Close()
	var err error
	t.closeOnce.Do(func() {
		close(t.stop)
		t.wg.Wait()
		t.unregister()
		t.seqMu.Lock()
		if uerr := t.undoFailedCommit(); uerr != nil {
			// The refused taps' entries, and the last sequence their
			// commit wrote, stay readable: should the close still flush
			// them, the next start takes them as taps. Said, for the
			// record (an undo fails only on a disk that is failing).
			t.log.Error("outbox: a failed commit could not be undone before the store closed", "err", uerr)
		}
		t.seqMu.Unlock()
		err = t.closeStore()
		if herr := t.hw.close(); err == nil {
			err = herr
		}
	})
	return err
}

// closeStore closes the outbox's store, waiting at most closeWait: past
// that it is left to close on its own (the process is about to end).
//
// With no room on its disk for the flush that closing makes (its
// memtable written out as a table, through a mapped file), the store is
// left open for the process's end instead: the flush would die of SIGBUS
// (an outside test's gate, stopped on a full disk). Every tap it took was
// synced to its write-ahead log when taken; the next start replays it.
func (t *Terminal) closeStore() error {
	if need, free, short := t.flushRoom(); short {
		t.log.Error("outbox: no room on its disk for the store's closing flush; the store is left for the process's end, and the next start replays its log (nothing accepted is lost)",
			"dir", t.cfg.DataDir, "free", mib(free), "flush_needs", mib(need))
		return fmt.Errorf("terminal %s: the outbox's store in %s was not closed: %s free, its closing flush writes up to %s (free space there; every tap it took was synced when taken, and the next start replays them)",
			t.cfg.ID, t.cfg.DataDir, mib(free), mib(need))
	}
	done := make(chan error, 1)
	go func() { done <- t.db.Close() }()
	timer := time.NewTimer(t.closeWait)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("terminal %s: close the outbox's store in %s: %w", t.cfg.ID, t.cfg.DataDir, err)
		}
		return nil
	case <-timer.C:
		return fmt.Errorf("terminal %s: the outbox's store in %s did not close within %s (its disk refuses writes? the store retries them): given up; every tap it took was synced when taken, and the next start copies the store aside and repairs it", t.cfg.ID, t.cfg.DataDir, t.closeWait)
	}
}

// flushRoom is the room the store's closing flush needs (what its
// memtables' write-ahead logs hold, and openFloor beside), the free space
// now, and whether it is short. A file system that cannot be asked is
// not short.
func (t *Terminal) flushRoom() (need, free uint64, short bool) {
	if t.room == nil || t.room.Min() == 0 {
		return 0, 0, false
	}
	free, ok := t.room.FreeFresh()
	if !ok {
		return 0, 0, false
	}
	need = openFloor
	logs, _ := filepath.Glob(filepath.Join(t.cfg.DataDir, "*.mem"))
	for _, l := range logs {
		need += allocatedBytes(l)
	}
	return need, free, free < need
}

// allocatedBytes is the disk space file takes (a mapped log is sparse: its
// size is what was reserved, its blocks what was written); its size where
// the system says no blocks.
func allocatedBytes(file string) uint64 {
	fi, err := os.Stat(file)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512
	}
	return uint64(fi.Size())
}

// register puts the terminal's collectors in cfg.Metrics (all or none),
// last thing in Open: a failed Open leaves nothing registered, and a
// terminal reopened on the same registry after Close registers again.
func (t *Terminal) register() error {
	if t.cfg.Metrics == nil {
		return nil
	}
	for _, c := range append([]prometheus.Collector{t.refusedBy, t.denyRefusedBy, t.corrupt, t.commitFailed}, t.healthCollectors()...) {
		if err := t.cfg.Metrics.Register(c); err != nil {
			t.unregister()
			return fmt.Errorf("terminal %s metrics: %w", t.cfg.ID, err)
		}
		t.collectors = append(t.collectors, c)
	}
	return nil
}

func (t *Terminal) unregister() {
	for _, c := range t.collectors {
		t.cfg.Metrics.Unregister(c)
	}
	t.collectors = nil
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
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("key %q: corrupt value of %d bytes", key, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

func setU64(txn *badger.Txn, key []byte, v uint64) error {
	return txn.Set(key, binary.BigEndian.AppendUint64(nil, v))
}

// explainRefusal adds to a NATS error that refuses this terminal's user
// what the operator can do about it: the server's own words ("Authorization
// Violation", "User Authentication Revoked") name no key and no terminal.
func (t *Terminal) explainRefusal(msg string) string {
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "certificate has expired") || strings.Contains(lower, "not yet valid"):
		return msg + ": the NATS server's TLS certificate is out of its validity dates (renew it on the server; or is this gate's clock wrong?); taps stay in the outbox"
	case strings.Contains(lower, "doesn't contain any ip sans") || strings.Contains(lower, "is valid for") || strings.Contains(lower, "not valid for any names"):
		return msg + ": the NATS server's TLS certificate does not name the host the gate dials (--nats: use a name the certificate holds, or reissue it with this name); taps stay in the outbox"
	case t.cfg.NATSCA == "" && (strings.Contains(lower, "x509:") || strings.Contains(lower, "tls: ")):
		return msg + ": the gate was given no CA (faregate terminal --nats-ca: the CA that signed the server's certificate, or the certificate itself given to clearing's --nats-tls-cert); taps stay in the outbox"
	case strings.Contains(lower, "x509:") || strings.Contains(lower, "tls: "):
		return msg + ": the NATS server's TLS certificate does not check against the CA the gate was given (faregate terminal --nats-ca: the CA that signed the server's certificate, or the certificate itself given to clearing's --nats-tls-cert); taps stay in the outbox"
	case strings.Contains(lower, "nkeys not supported"):
		return msg + ": the NATS server does not authenticate users by NKey, as clearing's servers do (is --nats clearing's server, configured by `faregate nats config`?); taps stay in the outbox"
	}
	if t.refusesOwnEvents(msg) {
		return fmt.Sprintf("%s: the server does not let this gate publish its taps on its events subject: is --operator %s the operator the ledger registered terminal %s under? (`faregate ledger status` lists the registry; each gate may publish only on its registered operator's subject); taps stay in the outbox", msg, t.cfg.Operator, t.cfg.ID)
	}
	if !strings.Contains(lower, "authorization violation") && !strings.Contains(lower, "authentication revoked") &&
		!strings.Contains(lower, "authentication expired") {
		return msg
	}
	return fmt.Sprintf("%s: the server refuses NATS user %s (is terminal %s registered on the ledger with this key, and not revoked? `faregate ledger status` lists the registry; `faregate terminal keygen` prints the user a key and id give); taps stay in the outbox", msg, t.NATSUser(), t.cfg.ID)
}

// refusesOwnEvents says whether msg, an error from the NATS server, refuses
// a publish on this gate's own events subject.
func (t *Terminal) refusesOwnEvents(msg string) bool {
	lower := strings.ToLower(msg)
	return strings.Contains(lower, "permissions violation for publish") &&
		strings.Contains(msg, `"`+fare.EventSubject(t.cfg.Operator, t.cfg.ID)+`"`)
}

// heldUnconfirmed counts the outbox's entries above the confirmed sequence
// and the number there should be (last less confirmed).
func (t *Terminal) heldUnconfirmed() (held, want uint64, err error) {
	return countHeld(t.db, t.confirmed.Load(), t.lastSeq.Load())
}

// countHeld counts db's outbox entries in (conf, last] and the number
// there should be: less the sequences of a pending skip (resign.go), which
// hold no event of the outbox (an outside review: a crash while one was
// pending called 97 of 100 taps lost, and three such starts refused the
// gate).
func countHeld(db *badger.DB, conf, last uint64) (held, want uint64, err error) {
	if last > conf {
		want = last - conf
	}
	err = db.View(func(txn *badger.Txn) error {
		from, to, err := readSkip(txn)
		if err != nil {
			return err
		}
		if to != 0 && from >= conf && to <= last {
			want -= to - from
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pOutbox}})
		defer it.Close()
		for it.Seek(outboxKey(conf + 1)); it.Valid(); it.Next() {
			if k := it.Item().Key(); len(k) == 9 && binary.BigEndian.Uint64(k[1:]) <= last {
				held++
			}
		}
		return nil
	})
	return held, want, err
}
