// Package clearing is Faregate's clearing house. It consumes signed fare
// events from NATS JetStream, verifies each against the public terminal
// registry, applies each exactly once to a double-entry journal in Badger,
// seals settlement periods into Merkle-rooted batches and commits them to the
// shared ledger; operators reconcile through its HTTP settlement API.
//
// Delivery guarantees do not rest on JetStream alone (it acknowledges before
// it syncs and deduplicates only within a window): clearing deduplicates
// permanently by (terminal, sequence) in its own store, acks JetStream only
// after the synced Badger commit, and sends each terminal a signed
// confirmation of what it durably applied or rejected, so the terminal's
// durable outbox keeps every event until then.
package clearing

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/diskspace"
	"github.com/faregate/faregate/ledger"
)

// Config configures a clearing house.
type Config struct {
	// DataDir holds the Badger store and, when NATS is embedded, JetStream.
	DataDir string
	// NATSURL connects to an external NATS server or cluster; empty starts
	// an embedded nats-server listening on NATSHost:NATSPort (-1: any port).
	NATSURL  string
	NATSHost string
	NATSPort int
	// Registry holds the currency and the operators' tariffs. Which terminal
	// signs with which key is not taken from it but from the shared ledger's
	// on-chain registry (see ChainTerminals and PublishRegistry).
	Registry *Registry
	// Ledger is where settlement batches are committed and the terminal
	// registry is read.
	Ledger ledger.Ledger
	// RegistryPoll is how often clearing reads new blocks for terminal
	// registrations and revocations (default 1 s). An event from a terminal
	// not known yet also triggers a read, at most every RegistryPoll/10.
	RegistryPoll time.Duration
	// FlooderBar is how long the embedded NATS server refuses a terminal
	// that floods the JetStream API (apiwatch.go), doubled at each repeat
	// up to an hour (default 1 min; negative: never refused, only named).
	FlooderBar time.Duration
	// OwnerLease is how long the process holding the event consumer may go
	// without renewing its owner record before another process of the
	// same store (a restart after a crash) takes the consumer over; a
	// process whose record is renewed within it (a live copy of the data
	// dir) is refused (default DefaultOwnerLease; owner.go).
	OwnerLease time.Duration
	// Period is the settlement period length. Periods end on whole
	// seconds (the chain keeps whole seconds): a period ends at the first
	// whole second at least Period after the last one was sealed.
	Period time.Duration
	// FetchBatch is how many events one pull fetches and one synced Badger
	// transaction applies (the group commit size): 1 to MaxFetchBatch,
	// default 1000.
	FetchBatch int
	// VerifyWorkers is the number of goroutines verifying signatures;
	// default GOMAXPROCS.
	VerifyWorkers int
	// DedupWindow is JetStream's duplicate window on the event stream
	// (default 2 minutes). Clearing's own dedup is permanent; the window
	// only saves work.
	DedupWindow time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Metrics registers clearing's Prometheus metrics; nil skips them.
	Metrics prometheus.Registerer
	// NATSSeedFile is clearing's own NATS user seed ("SU…", as nk or nsc
	// write it) for an external server, whose configuration must admit it
	// (faregate nats config). Empty with the embedded server: clearing
	// makes a fresh user at each start.
	NATSSeedFile string
	// NATSTLSCert and NATSTLSKey (PEM files) turn on TLS on the embedded
	// server; NATSCA is the CA file clearing trusts for its own connection
	// (default with embedded TLS: the server certificate itself).
	NATSTLSCert, NATSTLSKey, NATSCA string
	// ConfirmKey signs the confirmations terminals act on; nil reads
	// DataDir/confirm.key, creating it on first start.
	ConfirmKey ed25519.PrivateKey
	// Limits bounds the streams; zero fields take DefaultLimits.
	Limits Limits
	// MinFreeBytes is the free space DataDir's file system must keep:
	// below it clearing takes no events (they wait; readiness says why),
	// and below 256 MiB (or it, if smaller) Open refuses (diskroom.go). 0:
	// DefaultMinFreeBytes, or a quarter of a smaller disk (at least storeRoom); negative: no
	// check.
	MinFreeBytes int64
	// statfs, when set, reads the data dir's free space and size instead
	// of the file system (tests of a full disk: export_test.go).
	statfs func(dir string) (free, size uint64, err error)
	// plain turns NATS authentication and signed confirmations off. Only
	// the benchmark measuring what they cost sets it (export_test.go).
	plain bool
	// serialCommits turns off committing one batch while preparing the
	// next (Clearing.applyVerified): what BenchmarkPricingCost compares
	// the pipeline with (export_test.go).
	serialCommits bool
	// replayBudget, when not 0, stands for replayBudget (tests).
	replayBudget int
	// Feed, when set, prices every accepted tap live from the city's GTFS
	// Fares v2 feed (journeys, transfers, caps, apportionment between
	// operators; see clearing/journeys); the registry's Legs say what each
	// terminal's taps ride. Without it each accepted entry or validation
	// posts its operator's flat fare. FeedVersion is recorded in every
	// rider day priced with it.
	Feed        *fares.Feed
	FeedVersion string
	// NextFeed, if set, is a new feed version (NextFeedVersion) that takes
	// effect at NextFeedFrom: fare days beginning at or after that time are
	// priced with it, earlier days with Feed, whenever their taps arrive.
	// It must share Feed's time zone and fare-day cut-over.
	NextFeed        *fares.Feed
	NextFeedVersion string
	NextFeedFrom    time.Time
	// Acquirer charges riders' post-paid accounts once their fare days are
	// over (payments.go); nil bills nobody: days stay in the index to
	// bill, riders' debts in their accounts. Needs a Feed.
	Acquirer Acquirer
	// FareClock is the city's time, which decides when fare days are over
	// (default Now; the simulator runs a faster one). CloseAfter is how
	// long after a fare day's cut-over its riders are billed (default 1 h),
	// to let offline gates catch up; taps arriving later still count, in
	// the next bill. RetrySchedule is when a declined rider is charged
	// again (default DefaultRetrySchedule); CollectEvery how often the
	// collector looks (default 1 s).
	FareClock func() time.Time
	// FareClockRate is how many seconds FareClock runs a real second (0:
	// one, a clock of the wall's pace; the simulator's city clock runs a
	// day in a minute): gates stamp taps by the city's time, so the
	// confirmation latency clearing measures (tap to applied) is the fare
	// clock's lapse divided by it.
	FareClockRate float64
	// MaxDeviceTimeAhead is how far ahead of FareClock a tap's signed
	// device time may be; a tap further ahead is quarantined as
	// device-time-ahead, not recorded, and applies when the gate sends it
	// again once the clock has caught up (default DefaultMaxDeviceTimeAhead;
	// negative: no bound).
	MaxDeviceTimeAhead time.Duration
	// MaxDeviceTimeHeld is how far ahead of FareClock a tap's signed device
	// time may be and be held (MaxDeviceTimeAhead); a tap further ahead is
	// rejected for good as device-time-far-ahead (default
	// DefaultMaxDeviceTimeHeld; negative: no bound, held however far).
	MaxDeviceTimeHeld time.Duration
	// MaxDeviceTimeBehind is how far behind FareClock a tap's signed
	// device time may be; a tap older is rejected for good as
	// device-time-behind (default DefaultMaxDeviceTimeBehind; negative:
	// no bound).
	MaxDeviceTimeBehind time.Duration
	CloseAfter          time.Duration
	RetrySchedule       []time.Duration
	CollectEvery        time.Duration
	// AcquirerTimeout bounds each charge asked of the Acquirer (default
	// 30 s): one unanswered by then is asked again later, with the same
	// key.
	AcquirerTimeout time.Duration
	// RiderCache is how many rider fare days (and weeks) live pricing keeps
	// decoded in memory between batches (0: DefaultRiderCache; negative:
	// none, every tap reads its rider's day from the store).
	RiderCache int
	// RiderKey is the key of the riders' pseudonyms (RiderPseudonym); nil
	// reads DataDir/rider.key, creating it on first start.
	RiderKey []byte
	// FaceKey (32 bytes) encrypts the face template store in
	// DataDir/faces and keys the face bucket's key tokens; nil leaves face
	// enrolment off (faces.go). FaceHeadEvery is how often every
	// terminal's face gallery head is issued again (default
	// DefaultFaceHeadEvery); FaceMaxGallery bounds the face-only subjects
	// at one terminal (default gallery.DefaultMaxGallery, the size 1:N was
	// measured at).
	FaceKey        []byte
	FaceHeadEvery  time.Duration
	FaceMaxGallery int
	// FaceErasureLog is where every face erasure is logged before the
	// store records it, and read at start to apply again any erasure a
	// store restored from an older backup lacks (default
	// DataDir/FaceErasureLogFile; keep it where store backups are not
	// restored over it: faceerasurelog.go).
	FaceErasureLog string
	// FaceTapGrace is how long after a subject's erasure a face tap of it
	// from a gate that held it is still taken (default
	// DefaultFaceTapGrace; faceclaims.go).
	FaceTapGrace time.Duration
	// FaceModels are the descriptor pipelines the gates run: enrolment
	// takes templates of these only (default gallery.DlibModels).
	FaceModels []string
	// VerifierPartitions, when positive, moves signature verification to
	// separate verifier processes (Verifier), one or more per partition of
	// the terminals, and clearing consumes what they verified
	// (partitions.go). 0: clearing verifies every event itself.
	// VerifierKeys are the public NKeys ("U…") of the verifiers' NATS
	// users, each with the partition it may work on, admitted by the
	// embedded server with only that partition's verifier permissions (for
	// an external server: faregate nats config --verifier-key).
	VerifierPartitions int
	VerifierKeys       []VerifierKey
}

// Limits bound what the NATS streams hold. The event stream refuses new
// messages when full (per terminal, then in all): a refused publish stays in
// the terminal's durable outbox and is sent again, so nothing accepted at a
// gate is dropped. Messages older than MaxAge leave the stream the same way:
// the terminal still holds them and resends until clearing confirms. The
// quarantine stream drops its oldest entries when full: clearing's store
// keeps every rejection with its reason, and the terminal keeps the rejected
// event in its dead-letter store.
type Limits struct {
	// Replicas of the streams and buckets clearing creates (0: 3 on a NATS
	// cluster, 1 on a single server). Streams the operator made keep theirs.
	Replicas              int
	EventMaxBytes         int64
	EventMaxAge           time.Duration
	EventMaxPerTerminal   int64
	QuarantineMaxBytes    int64
	QuarantineMaxMessages int64
	QuarantineMaxAge      time.Duration
}

// DefaultLimits are the stream limits clearing uses unless told otherwise.
var DefaultLimits = Limits{
	EventMaxBytes: 1 << 30, EventMaxAge: 24 * time.Hour, EventMaxPerTerminal: 100_000,
	QuarantineMaxBytes: 64 << 20, QuarantineMaxMessages: 100_000, QuarantineMaxAge: 7 * 24 * time.Hour,
}

func (l *Limits) fill() {
	d := DefaultLimits
	for _, f := range []struct {
		v   *int64
		def int64
	}{{&l.EventMaxBytes, d.EventMaxBytes}, {&l.EventMaxPerTerminal, d.EventMaxPerTerminal}, {&l.QuarantineMaxBytes, d.QuarantineMaxBytes}, {&l.QuarantineMaxMessages, d.QuarantineMaxMessages}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	if l.EventMaxAge <= 0 {
		l.EventMaxAge = d.EventMaxAge
	}
	if l.QuarantineMaxAge <= 0 {
		l.QuarantineMaxAge = d.QuarantineMaxAge
	}
}

// Stats are clearing's running totals since start.
type Stats struct {
	Applied     uint64 `json:"applied"`
	Duplicates  uint64 `json:"duplicates"`
	Quarantined uint64 `json:"quarantined"`
	// Rejected counts sequences durably rejected for good (a subset of
	// Quarantined): confirmed to their terminal as rejected.
	Rejected uint64 `json:"rejected"`
	// Priced and Unpriced count accepted taps live pricing booked, and
	// those the feed could not price (applied, to review: charged their
	// journey's maximum fare where the feed knows it, else nothing).
	// PaymentsAsked and PaymentsDeclined count acquirer charges since
	// start (payments.go).
	PaymentsAsked    uint64            `json:"payments_asked"`
	PaymentsDeclined uint64            `json:"payments_declined"`
	Priced           uint64            `json:"priced"`
	Unpriced         uint64            `json:"unpriced"`
	QuarantineByWhy  map[string]uint64 `json:"quarantined_by_reason"`
	// APIFlooders names the terminals that went over a budget (apiwatch.go:
	// feed or JetStream API requests, messages quarantined, connections),
	// with how many times they did.
	APIFlooders      map[string]uint64 `json:"api_flooders,omitempty"`
	BatchesSealed    uint64            `json:"batches_sealed"`
	BatchesCommitted uint64            `json:"batches_committed"`
}

// Clearing is a running clearing house.
type Clearing struct {
	ready readyProbe // Ready's last calls to NATS and the ledger
	cfg   Config
	// startApply is the apply index this start began at.
	startApply uint64
	runs       fare.Runs // the Run calls Close stops and waits for
	// room is the data dir's disk margin; roomPaused is set while it
	// holds the verifier (diskroom.go).
	room       *diskspace.Margin
	roomPaused atomic.Bool
	// lease is this process's hold on the event consumer (owner.go).
	lease ownerLease
	// stalledSince is since when each verifier partition has had events
	// waiting and no verifier (partitions.go).
	stallMu       sync.Mutex
	stalledSince  map[int]time.Time
	stallFloor    map[int]uint64 // each partition's ack floor when last read
	partitionGone map[int]string // partitions whose verify consumer was found missing, and why
	// commitFailingSince is since when committing batches to the ledger
	// has failed, with the last error (Ready).
	commitStateMu      sync.Mutex
	commitFailingSince time.Time
	commitErr          error
	log                *slog.Logger
	store              *Store
	terminals          *ChainTerminals
	// lastSync is when the registry was last read on demand (UnixNano);
	// owned by the consume loop.
	lastSync int64
	embedded *EmbeddedNATS
	nc       *nats.Conn
	js       jetstream.JetStream
	cons     jetstream.Consumer
	metrics  *metrics
	running  atomic.Bool // Run's consume loop is going (readiness)
	wmSub    *nats.Subscription
	feeds    *gateFeeds    // the terminals' gate feeds (gatefeeds.go)
	barNow   chan struct{} // a flooder barred: reload the server's users now (followRegistry)
	natsID   *clearingIdentity
	usersMu  sync.Mutex
	users    []string        // NKeys the embedded server admits, sorted
	legSaid  map[string]bool // terminals sayLegs logged (followRegistry's goroutine only)
	rejects  *fare.Tally
	fetchLog *fare.Tally // fetch failures: one line, then a summary a 10 s
	natsLog  *fare.Tally // the NATS connection's trouble, said the same way
	// unpricedLog summarises accepted taps the feed could not price.
	unpricedLog *fare.Tally
	// aheadLog summarises taps applied though dated minutes or hours
	// ahead of clearing's clock (a gate's clock running fast): they are
	// priced by that time.
	aheadLog *fare.Tally
	// conflictLog summarises sequence conflicts, by terminal.
	conflictLog *fare.Tally
	// debtLog summarises riders listed for debt and unlisted after paying.
	debtLog   *fare.Tally
	rotations [][]byte    // the confirmation key's rotation chain, oldest first
	deny      *gateLists  // the deny list and enrolments at the gates (gatelists.go)
	watches   liveWatches // each terminal's watch consumers on the buckets (consumerguard.go)
	faces     *faces      // the face galleries (faces.go); nil: off
	// faceClaims: the terminals each subject was sent to, for checking
	// face taps in the verifier (faceclaims.go).
	faceClaims faceClaims
	denySub    *nats.Subscription // JetStream API audit: the gate-list consumer guard
	// announcements carries applied batches' confirmations to the
	// announcer goroutine Run owns.
	announcements chan map[string]*touch

	cur cursor // owned by the consume loop
	// sealAt is the open period's end, a whole second: the period is
	// sealed at it, and no event applied at or after it goes into the
	// period (owned by the consume loop).
	sealAt time.Time
	// sealWaiters are Settle calls waiting for the open period's seal
	// (owned by the consume loop).
	sealWaiters []chan error
	sealReq     chan chan error
	// payments carries the collector's acquirer answers to the consume
	// loop, the journal's only writer.
	payments                        chan *paymentPost
	feedReq                         chan *scheduleRequest // feed versions to install (feedschedule.go)
	feedSem                         chan struct{}         // one schedule change at a time
	billMu                          sync.RWMutex          // bills (read), BillingSnapshot (write) (payments.go)
	billRiders                      riderLocks            // never two bills of one rider (payments.go)
	debtListStale                   atomic.Bool           // a bill's deny-list change failed: reconcileDebtors again (payments.go)
	apiCalls                        apiWatch              // terminals' feed and JetStream API requests, and their bars (apiwatch.go)
	junk                            apiWatch              // terminals' messages quarantined (apiwatch.go)
	replays                         replayCounts          // terminals' own events sent again (apiwatch.go)
	replayFlagMu                    sync.Mutex            // one replay bar at a time (noteReplay)
	payIdem                         [64]sync.Mutex        // never two idempotent payment requests of one key (PayDebtOnce)
	billAfter                       sync.Map              // rider: billBackoff, after a collector's bill of it failed
	paymentsAsked, paymentsDeclined atomic.Uint64
	commitMu                        sync.Mutex
	kick                            chan struct{}

	wmMu       sync.RWMutex
	watermarks map[string]uint64
	highest    map[string]uint64    // highest sequence recorded, per terminal
	asked      map[string]time.Time // last confirmation read from the store, per terminal
	// wantRange are the terminals that asked for range digests
	// (fare.WantRangeHeader): their confirmations are version 3.
	wantRange map[string]bool

	applied, duplicates, quarantined, rejected, sealed, committed atomic.Uint64
	priced, unpriced                                              atomic.Uint64
	whyMu                                                         sync.Mutex
	why                                                           map[string]uint64
}

// MaxFetchBatch bounds Config.FetchBatch (and a verifier's): one batch's
// transaction must fit Badger's (15% of its 64 MiB memtable), and each
// fetch holds its events in memory. 10,000 priced events applied in one
// transaction here; 20,000 did not.
const MaxFetchBatch = 5000

// Open opens the store, starts or connects to NATS and makes sure the
// streams and the durable consumer exist. Run starts the work.
func Open(ctx context.Context, cfg Config) (*Clearing, error) {
	if cfg.Registry == nil {
		return nil, errors.New("clearing: no terminal registry")
	}
	if err := cfg.Registry.Validate(); err != nil {
		return nil, err
	}
	if cfg.Ledger == nil {
		return nil, errors.New("clearing: no ledger")
	}
	if cfg.Period <= 0 {
		cfg.Period = 10 * time.Second
	}
	if cfg.FetchBatch <= 0 {
		cfg.FetchBatch = 1000
	}
	if cfg.FetchBatch > MaxFetchBatch {
		return nil, fmt.Errorf("clearing: fetch batch %d: want at most %d events", cfg.FetchBatch, MaxFetchBatch)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FareClock == nil {
		cfg.FareClock = cfg.Now
	}
	if cfg.MaxDeviceTimeAhead == 0 {
		cfg.MaxDeviceTimeAhead = DefaultMaxDeviceTimeAhead
	}
	if cfg.MaxDeviceTimeHeld == 0 {
		cfg.MaxDeviceTimeHeld = DefaultMaxDeviceTimeHeld
	}
	if cfg.MaxDeviceTimeBehind == 0 {
		cfg.MaxDeviceTimeBehind = DefaultMaxDeviceTimeBehind
	}
	if cfg.CloseAfter <= 0 {
		cfg.CloseAfter = time.Hour
	}
	if cfg.RetrySchedule == nil {
		cfg.RetrySchedule = DefaultRetrySchedule
	}
	if cfg.CollectEvery <= 0 {
		cfg.CollectEvery = time.Second
	}
	if cfg.AcquirerTimeout <= 0 {
		cfg.AcquirerTimeout = 30 * time.Second
	}
	if err := CheckFeeds(cfg.Feed, cfg.NextFeed, cfg.NextFeedFrom, cfg.Registry, cfg.Logger); err != nil {
		return nil, err
	}
	if cfg.Acquirer != nil && cfg.Feed == nil {
		return nil, errors.New("clearing: an acquirer bills priced fare days: it needs a feed (--feed)")
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = 2 * time.Minute
	}
	if cfg.RegistryPoll <= 0 {
		cfg.RegistryPoll = time.Second
	}
	if cfg.FlooderBar == 0 {
		cfg.FlooderBar = time.Minute
	}
	if cfg.OwnerLease <= 0 {
		cfg.OwnerLease = DefaultOwnerLease
	}
	if cfg.NATSHost == "" {
		cfg.NATSHost = "127.0.0.1"
	}
	if cfg.FaceKey != nil && len(cfg.FaceKey) != 32 {
		return nil, fmt.Errorf("clearing: face template key of %d bytes, want 32", len(cfg.FaceKey))
	}
	if cfg.FaceHeadEvery <= 0 {
		cfg.FaceHeadEvery = DefaultFaceHeadEvery
	}
	if cfg.FaceMaxGallery <= 0 {
		cfg.FaceMaxGallery = gallery.DefaultMaxGallery
	}
	if len(cfg.FaceModels) == 0 {
		cfg.FaceModels = gallery.DlibModels
	}
	if cfg.VerifierPartitions < 0 || cfg.VerifierPartitions > MaxVerifierPartitions {
		return nil, fmt.Errorf("clearing: %d verifier partitions, want 0 to %d", cfg.VerifierPartitions, MaxVerifierPartitions)
	}
	if err := checkVerifierKeys(cfg.VerifierKeys, cfg.VerifierPartitions); err != nil {
		return nil, fmt.Errorf("clearing: %w", err)
	}
	cfg.Limits.fill()
	c := &Clearing{
		barNow: make(chan struct{}, 1),
		cfg:    cfg, log: cfg.Logger.With("component", "clearing"),
		sealReq: make(chan chan error), kick: make(chan struct{}, 1), payments: make(chan *paymentPost), feedReq: make(chan *scheduleRequest), feedSem: make(chan struct{}, 1),
		why: make(map[string]uint64),
	}
	// The journal, the rider key, the confirmation key and face templates
	// live here; Badger's files are readable by all.
	if was, err := fare.PrivateDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("clearing data dir: %w", err)
	} else if was != 0 {
		c.log.Warn("the data dir was open to other users: made owner-only (it holds the journal and clearing's keys)", "dir", cfg.DataDir, "mode_was", fmt.Sprintf("%#o", was))
	}
	if err := bindLedger(cfg.DataDir, cfg.Ledger.ContractAddress(), cfg.Ledger.ChainID(), cfg.Now()); err != nil {
		return nil, err
	}
	// A store that already holds events was made with this data dir's
	// keys: a missing one is restored, never replaced (a new rider key
	// splits every rider's account in two; a new confirmation key makes
	// every terminal refuse clearing's confirmations).
	if HasStore(StoreDir(cfg.DataDir)) {
		for _, k := range []struct {
			file string
			mine bool
		}{{RiderKeyFile, cfg.RiderKey == nil}, {ConfirmKeyFile, cfg.ConfirmKey == nil}} {
			path := filepath.Join(cfg.DataDir, k.file)
			if _, err := os.Stat(path); k.mine && errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("clearing: %s is missing beside the store in %s: restore it from a backup (a new key would not match what the store and the terminals hold)", path, StoreDir(cfg.DataDir))
			}
		}
	}
	if cfg.RiderKey == nil {
		k, err := fare.LoadOrCreateSecret(filepath.Join(cfg.DataDir, RiderKeyFile), RiderKeySize, "rider pseudonym key")
		if err != nil {
			return nil, fmt.Errorf("clearing: %w", err)
		}
		c.cfg.RiderKey = k
	}
	if cfg.ConfirmKey == nil {
		k, err := LoadConfirmKey(cfg.DataDir, true)
		if err != nil {
			return nil, fmt.Errorf("clearing: %w", err)
		}
		c.cfg.ConfirmKey = k
	}
	rotations, err := readRotations(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("clearing: %w", err)
	}
	c.rotations = rotations
	if err := checkRotations(c.rotations, c.ConfirmationKey()); err != nil {
		return nil, fmt.Errorf("clearing: %w", err)
	}
	c.rejects = fare.NewTally(c.log, "messages quarantined")
	c.natsLog = fare.NewTally(c.log, "NATS connection trouble")
	c.unpricedLog = fare.NewTally(c.log, "taps the feed could not price, applied for review (a stop, route or network it does not know, or a journey no rule prices: charged leg by leg where it knows a leg's fare)")
	c.aheadLog = fare.NewTallyBy(c.log, "taps applied though dated ahead of clearing's clock: a gate's clock runs fast, and its taps are priced by the time it stamps (set the gate's clock: NTP)", "terminal")
	c.conflictLog = fare.NewTallyBy(c.log, "sequence conflict: a terminal's key signed another event under a sequence clearing already holds (applied, or rejected for good)", "terminal")
	c.debtLog = fare.NewTally(c.log, "riders' debts changed the deny list")
	c.fetchLog = fare.NewTally(c.log, "fetching events fails (retried every 250 ms)")
	// The registry must be loaded before the first event is judged.
	c.terminals = NewChainTerminals(cfg.Ledger)
	c.terminals.Log = c.log
	// Bounded: over a WebSocket no HTTP request bound applies, and a node
	// that took the connection and never answers would hold the start.
	if _, err := ledgerRead(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, c.terminals.Sync(ctx) }); err != nil {
		return nil, fmt.Errorf("clearing: %w", err)
	}
	c.room = diskspace.New(cfg.DataDir, cfg.MinFreeBytes, DefaultMinFreeBytes).AtLeast(storeRoom)
	if cfg.statfs != nil {
		auto := uint64(0)
		if cfg.MinFreeBytes == 0 {
			auto = DefaultMinFreeBytes
		}
		c.room.Set(c.room.Min(), auto, cfg.statfs)
	}
	if err := roomError(c.room, cfg.Now(), storeOpenFloor, "the store is not opened"); err != nil {
		return nil, fmt.Errorf("clearing: %w", err)
	}
	c.store, err = OpenStore(StoreDir(cfg.DataDir), cfg.Logger)
	if err != nil {
		return nil, err
	}
	if cfg.Registry != nil {
		// Refused here, recorded once the start succeeded: a first start
		// that failed (a port taken) with a mistyped registry would bind
		// the store to its currency (an outside review).
		if err := c.store.CheckCurrency(cfg.Registry.Currency); err != nil {
			c.Close()
			return nil, fmt.Errorf("clearing: %w", err)
		}
	}
	if cfg.VerifierPartitions > 0 {
		c.store.signedByTerminal = func(ev *fare.Signed) bool {
			t, ok := c.terminals.Lookup(ev.Terminal)
			return ok && ev.Verify(t.PublicKey) == nil
		}
	}
	if err := c.store.checkLedgerHolds(ctx, cfg.Ledger); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.keepFareClockAhead(); err != nil {
		c.Close()
		return nil, fmt.Errorf("fare clock: %w", err)
	}
	if cfg.Feed != nil {
		// The days an earlier process may have billed, before any event
		// is applied: a gate's late upload right after a restart changes
		// them too (riderBatch.billedBefore; the collector only sets it
		// when it first looks, a second or more after start).
		c.store.noteBilledBefore(cfg.Feed.FareDay(c.cfg.FareClock().Add(-cfg.CloseAfter)))
	}
	if err := c.openFaces(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if cfg.Feed == nil {
		// A store that priced fares keeps pricing them: its late taps at
		// flat fares would charge riders what no feed says.
		if priced, err := c.store.HasPricedDays(); err != nil {
			c.Close()
			return nil, err
		} else if priced {
			c.Close()
			return nil, fmt.Errorf("clearing: %w: the store in %s has rider days priced from a GTFS feed, and no feed is given: start with --feed (and --next-feed, as before), or late taps of those days would be charged flat fares",
				ErrFeedHistory, cfg.DataDir)
		}
	}
	if cfg.Feed != nil {
		if cfg.RiderCache == 0 {
			cfg.RiderCache = DefaultRiderCache
		}
		c.store.cache = newRiderCache(cfg.RiderCache)
		book := NewPricingBook(cfg.Registry.Currency, cfg.Feed, cfg.FeedVersion, cfg.NextFeed, cfg.NextFeedVersion, cfg.NextFeedFrom)
		if book.Next != nil {
			cfg.Logger.Info("next feed version scheduled", "version", cfg.NextFeedVersion, "from_fare_day", book.NextFrom.String(),
				"begins", cfg.Feed.FareDayBegins(book.NextFrom).Format(time.RFC3339))
		}
		// Versions scheduled while clearing ran (feedschedule.go).
		if book, err = scheduledBook(book, cfg.DataDir, cfg.Registry, cfg.Logger); err != nil {
			c.Close()
			return nil, fmt.Errorf("clearing: %w", err)
		}
		// Late taps of days priced already keep their version (feedhistory.go).
		if err := c.store.checkFeedHistory(book, cfg.Logger); err != nil {
			c.Close()
			return nil, fmt.Errorf("clearing: %w", err)
		}
		// Riders enrolled in a category a version lacks would travel free;
		// those whose revocation is queued are held to it (it is applied
		// as Run starts: a clearing refusing to start applied none, and
		// the revocations its refusal asked for could not help).
		revoked, err := queuedRevocations(cfg.DataDir, cfg.FareClock(), feedDays{&Pricing{Book: book}}.dayStartAtOrAfter)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("clearing: %w", err)
		}
		if err := c.store.checkEnrolledCategories(ctx, book, cfg.FareClock(), nil, revoked); err != nil {
			c.Close()
			return nil, fmt.Errorf("clearing: %w", err)
		}
		c.store.SetPricing(&Pricing{
			Book: book,
			Legs: cfg.Registry.LegsByTerminal(), StopLegs: cfg.Registry.LegsByStop(),
			// Riders are priced by their concession enrolments (enrol.go).
			Category: c.store.EnrolledCategory,
		})
	}
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if cfg.Registry != nil {
		if err := c.store.BindCurrency(cfg.Registry.Currency); err != nil {
			c.Close()
			return nil, fmt.Errorf("clearing: %w", err)
		}
	}
	if cfg.Feed != nil {
		// The apply index this start began at: what it applies is priced
		// under this build's rules.
		if err := c.store.BindPricingRules(journeys.RulesVersion, c.startApply); err != nil {
			c.Close()
			return nil, fmt.Errorf("clearing: %w", err)
		}
	}
	return c, nil
}

func (c *Clearing) start(ctx context.Context) error {
	var err error
	if c.cur, err = c.store.loadCursor(c.cfg.Now()); err != nil {
		return err
	}
	c.store.appliedN.Store(c.cur.nextApply)
	c.startApply = c.cur.nextApply
	// The open period's events are kept from its first (openperiod.go);
	// one begun before this start is read back from the store at its seal.
	c.store.open = openPeriod{}
	if c.cur.nextApply == c.cur.period.StartIndex {
		c.store.open.reset(c.cur.nextApply)
	}
	c.sealAt = c.periodEnd(c.cur.period.Start.Add(c.cfg.Period))
	if c.watermarks, err = c.store.Watermarks(); err != nil {
		return fmt.Errorf("load watermarks: %w", err)
	}
	if err := c.loadDenyList(); err != nil {
		return err
	}
	c.asked = make(map[string]time.Time)
	c.wantRange = make(map[string]bool)
	c.highest = make(map[string]uint64, len(c.watermarks))
	terms := make(map[string]bool)
	for term := range c.watermarks {
		terms[term] = true
	}
	for _, t := range c.terminals.All() {
		terms[t.ID] = true // one whose first sequence went missing has no watermark
	}
	for term := range terms {
		hi, err := c.store.HighestSequence(term)
		if err != nil {
			return fmt.Errorf("load highest sequences: %w", err)
		}
		if hi > 0 {
			c.highest[term] = max(hi, c.watermarks[term])
		}
	}
	if c.natsID, err = loadClearingIdentity(c.cfg.NATSSeedFile); err != nil {
		return err
	}
	url := c.cfg.NATSURL
	ca := c.cfg.NATSCA
	if url == "" {
		if err := CheckVerifierKeys(c.terminals.All(), c.natsID.public, c.verifiers()); err != nil {
			return err
		}
		users, skipped := NATSUsers(c.terminals.All(), c.natsID.public, c.verifiers())
		for _, id := range skipped {
			c.log.Error("terminal's registered key cannot carry a NATS identity; it cannot connect", "terminal", id)
		}
		c.embedded, err = StartEmbeddedNATS(EmbeddedOptions{
			Dir: c.cfg.DataDir, Host: c.cfg.NATSHost, Port: c.cfg.NATSPort, Users: users,
			TLSCert: c.cfg.NATSTLSCert, TLSKey: c.cfg.NATSTLSKey, Logger: c.cfg.Logger, anonymous: c.cfg.plain,
		})
		if err != nil {
			return err
		}
		c.users = natsUserKeys(users)
		url = c.embedded.ClientURL()
		if c.cfg.NATSTLSCert != "" {
			url = strings.Replace(url, "nats://", "tls://", 1)
			if ca == "" {
				ca = c.cfg.NATSTLSCert
			}
		}
	}
	opts := []nats.Option{nats.Name("faregate-clearing"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.CustomInboxPrefix(clearingInboxPrefix),
		// A frozen node's connection is given up in seconds (fare.NATSPingInterval).
		nats.PingInterval(fare.NATSPingInterval), nats.MaxPingsOutstanding(fare.NATSMaxPingsOut),
		// nats.go gives up for good on a server that refuses the user
		// twice in a row: one mistaken reload of the servers'
		// authorization would cut clearing off until restarted by hand,
		// while it looked alive. It keeps trying, and says why.
		nats.IgnoreAuthErrorAbort(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.natsLog.Add("error", c.explainNATS(err))
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.natsLog.Add("disconnected", c.explainNATS(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("reconnected to NATS", "url", fare.RedactURL(nc.ConnectedUrl()))
		})}
	if !c.cfg.plain {
		opts = append(opts, c.natsID.option())
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	c.nc, err = nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS %s: %w%s", fare.RedactURLList(url), err, strings.TrimPrefix(c.explainNATS(err), err.Error()))
	}
	if !c.cfg.plain {
		if err := c.checkInbox(); err != nil {
			return fmt.Errorf("NATS %s: %w", fare.RedactURLList(url), err)
		}
	}
	c.js, err = jetstream.New(c.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// Asked while a cluster forms too (its meta leader not elected yet, the
	// request goes unanswered): each try on its own clock, as placements.
	if _, err := retryPlacement(ctx, c.js.AccountInfo); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("NATS %s: JetStream is not enabled for clearing's account on the server (give the server a jetstream block, and its account JetStream): %w", fare.RedactURLList(url), err)
		}
		return fmt.Errorf("NATS %s: JetStream account info: %w", fare.RedactURLList(url), err)
	}
	// The store must own the event consumer before it changes anything:
	// a second store on the same NATS is refused with everything as it was.
	if err := c.claimConsumer(ctx, EventConsumer); err != nil {
		return err
	}
	// An operator's event stream clearing cannot use is refused before
	// clearing makes its other streams (an outside review found the
	// quarantine stream made by a start then refused).
	if err := c.checkOperatorEventStream(ctx); err != nil {
		return err
	}
	lim := c.cfg.Limits
	quarantine := jetstream.StreamConfig{
		Name: fare.QuarantineStream,
		// Clearing's own subject, and one for each verifier partition's.
		Subjects:   []string{fare.QuarantineSubject, fare.QuarantineSubject + ".>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Duplicates: 2 * time.Minute,
		MaxBytes:   lim.QuarantineMaxBytes,
		MaxMsgs:    lim.QuarantineMaxMessages,
		MaxAge:     lim.QuarantineMaxAge,
		Discard:    jetstream.DiscardOld,
	}
	if n := c.cfg.VerifierPartitions; n > 0 && lim.QuarantineMaxMessages > 0 {
		// Each subject (clearing's, each partition's) at most its share of
		// the messages: one partition's verifier flooding its own subject
		// evicts its own oldest, not the others' (an outside review wiped
		// every partition's evidence with one).
		quarantine.MaxMsgsPerSubject = max(lim.QuarantineMaxMessages/int64(n+1), 1)
	}
	if _, err := c.ensureStream(ctx, quarantine); err != nil {
		return err
	}
	if c.cons, err = c.ensureEventStream(ctx); err != nil {
		return err
	}
	c.redeliverUnacked(ctx)
	c.wmSub, err = c.nc.Subscribe(fare.WatermarkSubject("*"), c.answerConfirmation)
	if err != nil {
		return fmt.Errorf("subscribe watermark requests: %w", err)
	}
	if err := c.serveVerifierAPI(); err != nil {
		return err
	}
	if err := c.openGateFeeds(); err != nil {
		return err
	}
	if err := c.openGateLists(ctx); err != nil {
		return err
	}
	if err := c.openFacesBucket(ctx); err != nil {
		return err
	}
	// Always kept (the dashboard reads them); registered only with Metrics.
	c.metrics = newMetrics(c.cfg.Metrics)
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "faregate_clearing_disk_free_bytes",
			Help: "Free space on the data dir's file system (read at most once a second; -1: it reports none). Below the margin (--min-free-mib) clearing takes no events."},
			func() float64 {
				free, ok := c.room.FreeNow(c.cfg.Now())
				if !ok {
					return -1
				}
				return float64(free)
			}))
	}
	return nil
}

// Store is the clearing store, for the settlement API and audits.
func (c *Clearing) Store() *Store { return c.store }

// Registry is the tariff registry in use.
func (c *Clearing) Registry() *Registry { return c.cfg.Registry }

// Terminals is the on-chain terminal registry clearing follows.
func (c *Clearing) Terminals() *ChainTerminals { return c.terminals }

// SyncTerminals reads registry changes up to the chain's head now, instead of
// at the next poll; when it returns, a revocation committed before the call
// applies to every event processed afterwards.
func (c *Clearing) SyncTerminals(ctx context.Context) error {
	if err := c.terminals.Sync(ctx); err != nil {
		return err
	}
	return c.updateNATSUsers()
}

// RiderAccount is the pseudonymous journal account of the rider behind a
// medium, under this clearing house's rider key.
func (c *Clearing) RiderAccount(m fare.MediaKind, token string) string {
	return RiderAccount(c.cfg.RiderKey, m, token)
}

// ConfirmationKey is the public key terminals verify confirmations with.
func (c *Clearing) ConfirmationKey() ed25519.PublicKey {
	return c.cfg.ConfirmKey.Public().(ed25519.PublicKey)
}

// AuditFares reprices every rider day from the stored events alone and
// compares with what the events posted (nil without a feed).
func (c *Clearing) AuditFares() (*FareAudit, error) {
	p := c.store.pricing.Load()
	if p == nil {
		return nil, nil
	}
	return c.store.AuditFares(p, c.RiderAccount)
}

// Ledger is the shared ledger in use.
func (c *Clearing) Ledger() ledger.Ledger { return c.cfg.Ledger }

// NATSURL is the NATS URL terminals should use.
func (c *Clearing) NATSURL() string { return c.nc.ConnectedUrl() }

// Stats returns running totals.
func (c *Clearing) Stats() Stats {
	s := Stats{
		Applied: c.applied.Load(), Duplicates: c.duplicates.Load(), Quarantined: c.quarantined.Load(), Rejected: c.rejected.Load(),
		Priced: c.priced.Load(), Unpriced: c.unpriced.Load(),
		PaymentsAsked: c.paymentsAsked.Load(), PaymentsDeclined: c.paymentsDeclined.Load(),
		BatchesSealed: c.sealed.Load(), BatchesCommitted: c.committed.Load(),
		QuarantineByWhy: make(map[string]uint64), APIFlooders: c.apiCalls.flooders(),
	}
	c.whyMu.Lock()
	for k, v := range c.why {
		s.QuarantineByWhy[k] = v
	}
	c.whyMu.Unlock()
	return s
}

// TerminalWatermark is the applied watermark clearing holds for a terminal.
func (c *Clearing) TerminalWatermark(id string) uint64 {
	c.wmMu.RLock()
	defer c.wmMu.RUnlock()
	return c.watermarks[id]
}

// Run consumes, applies, seals and commits until ctx is done. It returns
// nil on cancellation and an error if the store fails (clearing must not
// go on acknowledging what it cannot make durable).
func (c *Clearing) Run(ctx context.Context) error {
	// A store failure ends the consume loop: the helpers stop with it.
	ctx, ran, err := c.runs.StartOnly(ctx)
	if err != nil {
		return fmt.Errorf("clearing: %w", err)
	}
	defer ran()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	c.announcements = make(chan map[string]*touch, 8)
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		c.announcer()
	}()
	defer func() {
		close(c.announcements)
		<-announced
	}()
	wg.Add(8)
	go func() {
		defer wg.Done()
		c.unpricedLog.Run(ctx, 10*time.Second)
	}()
	go func() {
		defer wg.Done()
		c.aheadLog.Run(ctx, 10*time.Second)
	}()
	go func() {
		defer wg.Done()
		c.fetchLog.Run(ctx, 10*time.Second)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.natsLog.Run(ctx, 10*time.Second)
	}()
	go func() {
		defer wg.Done()
		c.conflictLog.Run(ctx, 10*time.Second)
	}()
	go func() {
		defer wg.Done()
		c.rejects.Run(ctx, 10*time.Second)
	}()
	go func() {
		defer wg.Done()
		c.followDenyList(ctx)
	}()
	go func() {
		defer wg.Done()
		c.commitLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		c.followRegistry(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.guardOwnerRecord(ctx, cancel)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.serveGateFeeds(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watchTerminalConns(ctx)
	}()
	if c.store.pricing.Load() != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.watchTimeframes(ctx)
		}()
	}
	if c.cfg.Acquirer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.collect(ctx)
		}()
	}
	if c.faces != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.followFaces(ctx)
		}()
	}
	if !c.cfg.plain {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.sweepConsumers(ctx)
		}()
	}
	c.running.Store(true)
	err = c.consumeLoop(ctx)
	c.running.Store(false)
	cancel()
	wg.Wait()
	if f := c.lease.fenced.Load(); f != nil {
		return *f
	}
	return err
}

// checkInbox makes sure the servers let clearing's user read its own
// inbox, where every answer to its requests comes: a user the servers
// admit, but not as clearing's (a verifier's or a terminal's seed given as
// --nats-seed), had every request go unanswered, and clearing gave up a
// minute later on a timeout that named no seed (an outside review).
func (c *Clearing) checkInbox() error {
	subj := clearingInboxPrefix + ".check." + nats.NewInbox()[len(nats.InboxPrefix):]
	sub, err := c.nc.SubscribeSync(subj)
	if err != nil {
		return fmt.Errorf("subscribe to clearing's inbox: %w", err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("NATS did not answer a flush: %w", err)
	}
	if err := c.nc.LastError(); err != nil && strings.Contains(strings.ToLower(err.Error()), "permissions violation") && strings.Contains(err.Error(), clearingInboxPrefix) {
		return fmt.Errorf("%w: the servers admit the user %s of --nats-seed, but not as clearing's: it may not read clearing's inbox %s.>, where every answer to clearing comes (a verifier's or a terminal's seed given by mistake?); give clearing's own seed, the one faregate nats config --clearing-seed admitted", err, c.natsID.public, clearingInboxPrefix)
	}
	return nil
}

// explainNATS is err with what to check when a NATS server refuses
// clearing's user (NATS's words name no flag).
func (c *Clearing) explainNATS(err error) string {
	msg := err.Error()
	if c.natsID == nil || !strings.Contains(strings.ToLower(msg), "authorization violation") {
		return msg
	}
	return fmt.Sprintf("%s: the server refuses clearing's NATS user %s; check that --nats-seed is the seed the servers' authorization admits (faregate nats config --clearing-seed, then reload the servers)", msg, c.natsID.public)
}

// followRegistry reads new blocks for terminal registrations and revocations
// every RegistryPoll until ctx ends.
func (c *Clearing) followRegistry(ctx context.Context) {
	t := time.NewTicker(c.cfg.RegistryPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.barNow:
			// At once, not at the next poll: each moment of a flood costs
			// every gate's requests their place (gatefeeds.go).
			if err := c.updateNATSUsers(); err != nil {
				c.log.Error("NATS users", "err", err)
			}
		case <-t.C:
			if _, err := ledgerRead(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, c.terminals.Sync(ctx) }); err != nil && ctx.Err() == nil {
				c.log.Warn("terminal registry", "err", err)
			}
			if err := c.updateNATSUsers(); err != nil {
				c.log.Error("NATS users", "err", err)
			}
			c.remindGaps()
			c.sayLegs()
			c.VerifierPartitions(ctx) // the partitions' backlog gauges
		}
	}
}

// sayLegs logs, once for each terminal registered on the ledger that the
// registry file gives no leg, what live pricing prices its taps as: what
// its operator's other gates at its stop ride, or nothing (applied
// unpriced until the registry gives it a leg and clearing restarts).
func (c *Clearing) sayLegs() {
	p := c.store.pricing.Load()
	if p == nil {
		return
	}
	for _, t := range c.terminals.All() {
		if _, ok := p.Legs[t.ID]; ok || c.legSaid[t.ID] {
			continue
		}
		if _, listed := c.cfg.Registry.TerminalKey(t.ID); listed {
			continue // the feed check at start spoke of it
		}
		if c.legSaid == nil {
			c.legSaid = map[string]bool{}
		}
		c.legSaid[t.ID] = true
		l, ok := p.StopLegs[StopLegKey(t.Operator, t.Stop)]
		if ok {
			c.log.Info("a terminal registered on the ledger has no leg in the registry: priced as its operator's other gates at its stop", "terminal", t.ID, "stop", t.Stop, "network", l.Network, "route", l.Route)
		}
		if err := p.Book.Feed.CheckGate(t.Stop, l.Network, l.Route, t.Operator); err != nil {
			c.log.Warn("a terminal registered on the ledger cannot be priced: its taps are applied unpriced (revenue to review) until the registry gives it a leg the feed prices and clearing restarts", "terminal", t.ID, "operator", t.Operator, "stop", t.Stop, "err", err)
		}
	}
}

// verifiers are the verifier users the NATS server admits.
func (c *Clearing) verifiers() Verifiers {
	return Verifiers{Keys: c.cfg.VerifierKeys, Partitions: c.cfg.VerifierPartitions}
}

// updateNATSUsers makes the embedded server admit exactly the registry's
// active terminals: a new registration can connect at once, a revoked
// terminal is disconnected and refused.
func (c *Clearing) updateNATSUsers() error {
	if c.embedded == nil || c.cfg.plain {
		return nil
	}
	c.usersMu.Lock()
	defer c.usersMu.Unlock()
	barred := c.apiCalls.barred(time.Now())
	terms := slices.DeleteFunc(slices.Clone(c.terminals.All()), func(t RegisteredTerminal) bool { return barred[t.ID] })
	users, _ := NATSUsers(terms, c.natsID.public, c.verifiers())
	keys := natsUserKeys(users)
	if slices.Equal(keys, c.users) {
		return nil
	}
	if err := c.embedded.SetUsers(users); err != nil {
		return err
	}
	c.log.Info("NATS users follow the terminal registry", "users", len(users)-1, "was", len(c.users)-1)
	c.users = keys
	return nil
}

// syncOnDemand reads the registry when an event names a terminal clearing
// does not know: it may have been registered since the last poll. Rate
// limited, so a flood of events from unknown terminals costs at most ten
// reads per poll interval.
func (c *Clearing) syncOnDemand(ctx context.Context) bool {
	now := time.Now().UnixNano()
	if now-c.lastSync < int64(c.cfg.RegistryPoll/10) {
		return false
	}
	c.lastSync = now
	// Events wait on this read: a node that does not answer holds them
	// for at most an API read's bound (Sync keeps what it read).
	sctx, cancel := context.WithTimeout(ctx, chainReadTimeout)
	defer cancel()
	if err := c.terminals.Sync(sctx); err != nil {
		c.log.Warn("terminal registry", "err", err)
	}
	return true
}

// redeliverUnacked resets clearing's consumer to its ack floor, so what an
// earlier process fetched and never applied (it died, or was stopped,
// with batches in hand) is delivered again at once, before anything newer.
// Left pending, those events would come back only after the consumer's
// AckWait, and this process's first ack (AckAll) of a later batch would
// acknowledge them unapplied: gone from the stream, recovered only when
// their terminals resend (an outside review). This process holds the
// store's owner record, so no other applies from the consumer. A server
// without the reset API (before nats-server 2.14) is said, not fatal.
func (c *Clearing) redeliverUnacked(ctx context.Context) {
	info := c.cons.CachedInfo()
	if info == nil || info.NumAckPending == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.js.ResetConsumer(rctx, info.Stream, info.Name); err != nil {
		c.log.Warn("could not reset the event consumer to its ack floor: events an earlier process fetched and did not apply are delivered again only after the consumer's ack wait, and those below this process's first ack come back when their terminals resend them",
			"stream", info.Stream, "consumer", info.Name, "unacked", info.NumAckPending, "err", err)
		return
	}
	c.log.Info("events an earlier process fetched and did not apply are delivered again first", "stream", info.Stream, "consumer", info.Name, "unacked", info.NumAckPending)
}

func (c *Clearing) consumeLoop(ctx context.Context) error {
	// Two stages: the verifier fetches, decodes and batch-verifies the next
	// batch on every core while this goroutine applies the previous one in
	// its synced transaction (one core and an fsync). Batches are applied
	// and acked in fetch order, so an ack covers only applied events.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	verified := make(chan *verifiedBatch, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		c.verifyLoop(ctx, verified)
	}()
	defer func() {
		cancel()
		<-stopped
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	defer func() { c.answerSeal(errors.New("clearing stopped before the period was sealed")) }()
	for {
		var sealDue <-chan time.Time // a Settle waits: wake at the period's end
		if len(c.sealWaiters) > 0 {
			sealDue = time.After(max(c.sealAt.Sub(c.cfg.Now()), 0))
		}
		select {
		case <-ctx.Done():
			return nil
		case reply := <-c.sealReq:
			// Asked to seal (Settle): waits for a lease renewal due,
			// rather than answer with the period still open.
			if err := c.holdLease(ctx); err != nil {
				reply <- err
				continue
			}
			c.sealSoon(reply)
		case <-sealDue:
		case p := <-c.payments:
			c.postPayments(p)
			continue
		case r := <-c.feedReq:
			r.reply <- c.installFeed(ctx, r)
			continue
		case vb := <-verified:
			if err := c.applyVerified(ctx, vb, verified); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		case <-tick.C:
		}
		if !c.cfg.Now().Before(c.sealAt) {
			if len(c.sealWaiters) > 0 {
				// A Settle waits for this seal, not for a later turn.
				if err := c.holdLease(ctx); err != nil {
					c.answerSeal(err)
					continue
				}
			}
			if err := c.seal(); err != nil {
				return err
			}
		}
	}
}

// verifyLoop fetches and verifies batches for consumeLoop until ctx ends.
func (c *Clearing) verifyLoop(ctx context.Context, out chan<- *verifiedBatch) {
	for ctx.Err() == nil {
		if c.waitForRoom(ctx) {
			continue
		}
		msgs := c.fetchDelivered(ctx, make([]jetstream.Msg, 0, c.cfg.FetchBatch))
		if len(msgs) == 0 {
			continue
		}
		c.metrics.fetched(msgs) // the consumer's lag
		vb := c.verify(ctx, msgs)
		select {
		case out <- vb:
		case <-ctx.Done():
			return // not acked: redelivered after a restart
		}
	}
}

// fetch takes what is available up to FetchBatch (fetchBatch).
func (c *Clearing) fetch(msgs []jetstream.Msg) ([]jetstream.Msg, error) {
	return fetchBatch(c.cons, c.cfg.FetchBatch, msgs)
}

// fetchDelivered is fetch for the consume loop: the messages delivered,
// those delivered before a fetch failed included (the consumer's leader
// moving, a server shutting down). Dropping those made the next applied
// batch's ack, which acknowledges every message up to its own (AckAll),
// remove them from the stream unapplied (an outside review). A failure
// that delivered nothing is counted and waited out.
func (c *Clearing) fetchDelivered(ctx context.Context, msgs []jetstream.Msg) []jetstream.Msg {
	msgs, err := c.fetch(msgs)
	if err != nil && ctx.Err() == nil {
		// A NATS outage fails every fetch: one line, then a summary.
		c.fetchLog.Add("fetch", err.Error())
		if len(msgs) == 0 {
			sleep(ctx, 250*time.Millisecond)
		}
	}
	return msgs
}

// fetchBatch takes what is available up to n without waiting to fill a
// batch (that would add its wait to every tap's latency at low load); when
// nothing is there it waits up to 200 ms for the first message. With an
// error it returns the messages delivered before it too.
func fetchBatch(cons jetstream.Consumer, n int, msgs []jetstream.Msg) ([]jetstream.Msg, error) {
	drain := func(b jetstream.MessageBatch, err error) error {
		if err != nil {
			return err
		}
		for m := range b.Messages() {
			msgs = append(msgs, m)
		}
		if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		return nil
	}
	if err := drain(cons.FetchNoWait(n)); err != nil || len(msgs) > 0 {
		return msgs, err
	}
	if err := drain(cons.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond))); err != nil || len(msgs) == 0 {
		return msgs, err
	}
	err := drain(cons.FetchNoWait(n - 1))
	return msgs, err
}

// verifiedBatch is a fetched batch decoded and verified, ready to apply.
type verifiedBatch struct {
	msgs  []jetstream.Msg
	cands []candidate
	start time.Time
}

// verify decodes a fetched batch, checks each event against the registry
// and batch-verifies the signatures (unless verifier partitions did):
// pure CPU work that needs no store.
func (c *Clearing) verify(ctx context.Context, msgs []jetstream.Msg) *verifiedBatch {
	start := time.Now()
	subject, verifySigs := fare.EventSubject, true
	lookup := c.terminalLookup(ctx)
	if c.cfg.VerifierPartitions > 0 {
		// Only verifiers may publish here (VerifierPermissions), each on
		// its own partitions' subjects, and only what verified; an event
		// is taken only from the partition NATS puts its terminal in,
		// reckoned from the operator the registry has for the terminal
		// (the subject the terminal may publish on), never from the one
		// the event claims: a verifier could otherwise claim an operator
		// that hashes into its own partition and burn another partition's
		// terminal's sequences. `ledger audit` checks every signature again.
		n := c.cfg.VerifierPartitions
		subject = func(op, term string) string {
			home := op
			if t, ok := lookup(term); ok {
				home = t.Operator
			}
			return VerifiedSubject(PartitionOf(home, term, n), op, term)
		}
		verifySigs = false
	}
	cands := checkEvents(msgs, subject, lookup, verifySigs, c.cfg.VerifyWorkers)
	var notAfter, notBefore, heldUntil time.Time
	now := c.cfg.FareClock()
	warnAfter := now.Add(clockAheadWarn)
	if c.cfg.MaxDeviceTimeAhead > 0 || c.cfg.MaxDeviceTimeBehind > 0 {
		if c.cfg.MaxDeviceTimeAhead > 0 {
			notAfter = now.Add(c.cfg.MaxDeviceTimeAhead)
			if c.cfg.MaxDeviceTimeHeld > 0 {
				heldUntil = now.Add(max(c.cfg.MaxDeviceTimeHeld, c.cfg.MaxDeviceTimeAhead))
			}
		}
		if c.cfg.MaxDeviceTimeBehind > 0 {
			notBefore = now.Add(-c.cfg.MaxDeviceTimeBehind)
		}
	}
	for i := range cands {
		cd := &cands[i]
		if cd.reason != "" {
			continue
		}
		if !notAfter.IsZero() && cd.ev.DeviceTime.After(notAfter) && (heldUntil.IsZero() || !cd.ev.DeviceTime.After(heldUntil)) {
			// Held, not judged for good: the verdict rests on clearing's
			// own clock, which may be the one that is wrong. The gate
			// keeps the tap and sends it again; it applies once clearing's
			// clock is within the bound of it.
			cd.reason, cd.detail = ReasonDeviceTimeAhead, fmt.Sprintf("terminal %s dated event %s (sequence %d) %s, after %s, the latest clearing's clock takes: not applied yet, held by the gate until clearing's clock is within %s of it (check the gate's time sync, or clearing's)",
				cd.ev.Terminal, cd.ev.ID, cd.ev.Sequence, cd.ev.DeviceTime.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339), c.cfg.MaxDeviceTimeAhead)
			continue
		}
		why, detail := "", ""
		if !heldUntil.IsZero() && cd.ev.DeviceTime.After(heldUntil) {
			why, detail = ReasonDeviceTimeFarAhead, fmt.Sprintf("terminal %s dated event %s (sequence %d) %s, more than %s after clearing's clock (%s): a broken clock, rejected for good, never charged (set the gate's clock; held, every later tap of the gate would wait behind it)",
				cd.ev.Terminal, cd.ev.ID, cd.ev.Sequence, cd.ev.DeviceTime.UTC().Format(time.RFC3339), max(c.cfg.MaxDeviceTimeHeld, c.cfg.MaxDeviceTimeAhead), now.UTC().Format(time.RFC3339))
		} else if !notBefore.IsZero() && cd.ev.DeviceTime.Before(notBefore) {
			why, detail = ReasonDeviceTimeBehind, fmt.Sprintf("terminal %s dated event %s (sequence %d) %s, more than %s before clearing's clock (%s): rejected for good, never charged (check the gate's time sync)",
				cd.ev.Terminal, cd.ev.ID, cd.ev.Sequence, cd.ev.DeviceTime.UTC().Format(time.RFC3339), c.cfg.MaxDeviceTimeBehind, notBefore.Add(c.cfg.MaxDeviceTimeBehind).UTC().Format(time.RFC3339))
		} else {
			why, detail = c.checkFaceTap(&cd.ev.Event) // a face its gate cannot have seen
		}
		if why == "" && cd.ev.DeviceTime.After(warnAfter) {
			// Said of taps applied only (an outside review saw one
			// rejected as far ahead counted here too).
			c.aheadLog.Add(cd.ev.Terminal, fmt.Sprintf("terminal %s dated event %s %s, %s ahead of clearing's clock",
				cd.ev.Terminal, cd.ev.ID, cd.ev.DeviceTime.UTC().Format(time.RFC3339), cd.ev.DeviceTime.Sub(now).Round(time.Second)))
			if c.metrics != nil {
				c.metrics.datedAhead.Inc()
			}
		}
		if why != "" {
			cd.reason, cd.detail, cd.reject = why, detail, true
			if !verifySigs {
				// As for the registry's refusals: only an event its
				// terminal signed uses up a sequence, whatever a verifier
				// vouched for.
				if t, ok := lookup(cd.ev.Terminal); !ok || cd.ev.Verify(t.PublicKey) != nil {
					cd.badSignature()
				}
			}
			continue
		}
		cd.fare = c.price(&cd.ev.Event)
		cd.rider = c.RiderAccount(cd.ev.Media, cd.ev.MediaToken)
	}
	return &verifiedBatch{msgs: msgs, cands: cands, start: start}
}

// checkSequenceConflict names an event refused as sequence-replayed that
// its terminal really signed: a conflict, not a replay (a resend of the
// same event is a duplicate), and logged as such, rate-limited per
// terminal. Without verifier partitions clearing verified its signature
// already: the terminal's key signed two events under one sequence (a
// second unit with its key, or its outbox restored from a backup). With
// them the applied event may instead be a verifier's forgery, so the
// signature is checked here (a rare path: one verification), and a
// replay of someone's, or a forgery, stays sequence-replayed. Either way
// the genuine event is kept in the quarantine stream.
func (c *Clearing) checkSequenceConflict(cand *candidate, reason *string) {
	e := &cand.ev.Event
	if c.cfg.VerifierPartitions > 0 {
		t, ok := c.terminals.Lookup(e.Terminal)
		if !ok || cand.ev.Verify(t.PublicKey) != nil {
			return
		}
	}
	*reason = ReasonSequenceConflict
	cand.detail = fmt.Sprintf("terminal %s signed event %s under sequence %d, which clearing applied with another event: a second unit signing with this terminal's key, its outbox restored from a backup, or (with verifier partitions) a forged applied event (faregate ledger audit checks its signature); this genuine event is kept here", e.Terminal, e.ID, e.Sequence)
	c.conflictLog.Add(e.Terminal, fmt.Sprintf("terminal %s sequence %d, event %s: %s", e.Terminal, e.Sequence, e.ID, "re-provision the gate (new key) or stop its twin; check faregate ledger audit"))
}

// terminalLookup finds a terminal in the registry, reading it once per
// batch on demand for a terminal not known yet.
func (c *Clearing) terminalLookup(ctx context.Context) func(id string) (RegisteredTerminal, bool) {
	synced := false
	return func(id string) (RegisteredTerminal, bool) {
		t, ok := c.terminals.Lookup(id)
		if !ok && !synced {
			synced = c.syncOnDemand(ctx)
			t, ok = c.terminals.Lookup(id)
		}
		return t, ok
	}
}

// badSignature marks cd junk: its signature does not verify with its
// terminal's registered key (whatever else was found, it uses up nothing).
func (cd *candidate) badSignature() {
	cd.reason, cd.detail, cd.reject = ReasonBadSignature, fmt.Sprintf("signature of event %s does not verify with terminal %s's registered key", cd.ev.ID, cd.ev.Terminal), false
}

// NewPricingBook is the fare book clearing prices with: feed, and next (if
// not nil) from the first fare day that begins at or after nextFrom. An
// audit repricing a store builds the same.
func NewPricingBook(currency string, feed *fares.Feed, version string, next *fares.Feed, nextVersion string, nextFrom time.Time) *journeys.Book {
	book := &journeys.Book{Feed: feed, FeedVersion: version, Currency: currency}
	if next != nil {
		return withVersion(book, next, nextVersion, nextFrom)
	}
	return book
}

// clockAheadWarn is how far ahead of clearing's clock a tap's device time
// may be before clearing says so (aheadLog): a gate's clock a few seconds
// fast is normal; minutes fast misprices peak and off-peak edges.
const clockAheadWarn = 5 * time.Minute

// DefaultMaxDeviceTimeAhead is how far ahead of clearing's fare clock a
// tap's signed device time may be and be applied: a gate's clock drifts, or
// is set to local time labelled UTC (14 hours at most), but a tap a day or
// more in the future is a broken clock (the gate's or clearing's) or a
// misused key.
const DefaultMaxDeviceTimeAhead = fare.DeviceTimeAhead

// DefaultMaxDeviceTimeHeld is how far ahead of clearing's fare clock a
// tap's signed device time may be and be held rather than rejected: a
// clearing clock days behind loses nothing, a gate's clock a month or more
// ahead is broken (as a month back is, DefaultMaxDeviceTimeBehind).
const DefaultMaxDeviceTimeHeld = 30 * 24 * time.Hour

// DefaultMaxDeviceTimeBehind is how far behind clearing's fare clock a
// tap's signed device time may be and be applied: a gate offline for weeks
// still gets its taps charged, a gate whose clock was reset does not
// charge riders for 1970.
const DefaultMaxDeviceTimeBehind = fare.DeviceTimeBehind

// checkEvents decodes a fetched batch and checks each event: that it
// arrived on subject(operator, terminal) of the terminal it names, that
// the terminal is registered and, with verifySigs, batch-verifies the
// signatures on workers cores. An event a registered terminal really signed
// but the registry refuses (revoked, another operator or stop) gets its
// reason with reject set: it uses up its sequence. Anything else with a
// reason is junk.
func checkEvents(msgs []jetstream.Msg, subject func(operator, terminal string) string, lookup func(id string) (RegisteredTerminal, bool), verifySigs bool, workers int) []candidate {
	n := len(msgs)
	cands := make([]candidate, n)
	signed := make([]fare.Signed, n)
	pubs := make([]ed25519.PublicKey, 0, n)
	vmsgs := make([][]byte, 0, n)
	sigs := make([][]byte, 0, n)
	vidx := make([]int, 0, n)
	for i, m := range msgs {
		cd := &cands[i]
		if err := fare.DecodeInto(&signed[i], m.Data()); err != nil {
			cd.reason, cd.detail = ReasonMalformed, err.Error()
			continue
		}
		ev := &signed[i]
		cd.ev = ev
		cd.digest = ev.Digest()
		// The subject names the publisher: NATS lets each terminal publish
		// only on its own, so an event claiming another terminal is junk and
		// burns no sequence of the terminal it names.
		if subj, want := m.Subject(), subject(ev.Operator, ev.Terminal); subj != want {
			cd.reason, cd.detail = ReasonSubjectMismatch, fmt.Sprintf("event of terminal %s (operator %s) arrived on %s, not %s", ev.Terminal, ev.Operator, subj, want)
			continue
		}
		t, ok := lookup(ev.Terminal)
		if !ok {
			cd.reason, cd.detail = ReasonUnknownTerminal, fmt.Sprintf("terminal %q is not in the on-chain registry", ev.Terminal)
			continue
		}
		// Whatever the registry says of it, the signature is checked first:
		// only an event the terminal really signed can be rejected for good
		// and use up its sequence; anything else is junk.
		switch {
		case t.Revoked():
			cd.reason, cd.detail = ReasonTerminalRevoked, fmt.Sprintf("terminal %s was revoked by %s in block %d", ev.Terminal, t.Operator, t.RevokedBlock)
		case t.Operator != ev.Operator:
			cd.reason, cd.detail = ReasonOperatorMismatch, fmt.Sprintf("terminal %s belongs to %s, event says %s", ev.Terminal, t.Operator, ev.Operator)
		case t.Stop != ev.Stop:
			cd.reason, cd.detail = ReasonStopMismatch, fmt.Sprintf("terminal %s serves stop %s, event says %s", ev.Terminal, t.Stop, ev.Stop)
		}
		pubs = append(pubs, t.PublicKey)
		vmsgs = append(vmsgs, ev.Message())
		sigs = append(sigs, ev.Signature())
		vidx = append(vidx, i)
	}
	var ok []bool
	if verifySigs {
		ok = verifyBatch(pubs, vmsgs, sigs, workers)
	} else {
		// A verifier vouched for these signatures. Those the registry
		// refuses would burn their terminal's sequence for good, so they
		// are checked here too (they are few): a verifier broken into
		// cannot make clearing reject a terminal's sequences with events
		// the terminal never signed, and a rejection keeps only a digest,
		// which no audit could check afterwards.
		ok = make([]bool, len(vidx))
		var rp []ed25519.PublicKey
		var rm, rs [][]byte
		var rj []int
		for j, i := range vidx {
			if cands[i].reason == "" {
				ok[j] = true
				continue
			}
			rp, rm, rs, rj = append(rp, pubs[j]), append(rm, vmsgs[j]), append(rs, sigs[j]), append(rj, j)
		}
		if len(rj) > 0 {
			for k, good := range verifyBatch(rp, rm, rs, 1) {
				ok[rj[k]] = good
			}
		}
	}
	for j, i := range vidx {
		cd := &cands[i]
		if !ok[j] {
			cd.badSignature()
			continue
		}
		if cd.reason != "" {
			cd.reject = true // signed by the terminal, refused by the registry
		}
	}
	return cands
}

// applyVerified applies a verified batch in one synced transaction, puts
// its quarantined messages in the quarantine stream and acks it: nothing is
// acked unless every event in it is durably applied, counted as a
// duplicate, or durably quarantined.
//
// While further verified batches are ready it pipelines them: the next
// batch's transaction is opened before this one commits and is prepared
// (read through this one's writes, see batchTxn) while the commit is on its
// way to disk; batches still commit, ack and confirm in order. With nothing
// ready it commits at once, so a lone tap waits for no other.
func (c *Clearing) applyVerified(ctx context.Context, vb *verifiedBatch, verified <-chan *verifiedBatch) error {
	now := c.cfg.Now()
	if !now.Before(c.sealAt) {
		// The open period ends at sealAt: events applied now are after it.
		if err := c.holdLease(ctx); err != nil {
			return err
		}
		if err := c.seal(); err != nil {
			return err
		}
		now = c.cfg.Now()
	}
	pb, err := c.store.prepare(c.store.db.NewTransaction(true), nil, vb.cands, c.cur, now.UTC())
	if err != nil {
		return fmt.Errorf("apply %d events: %w", len(vb.msgs), err)
	}
	for {
		// Sealing, a payment to post or a seal asked for stop the pipeline:
		// they need the store with every batch committed.
		var next *verifiedBatch
		var then func()
		var abort func(error) // a taken request answered when the commit fails
		now := c.cfg.Now()    // the next batch's applied_at, before the period's end
		if now.Before(c.sealAt) && !c.cfg.serialCommits {
			select {
			case next = <-verified:
			case reply := <-c.sealReq:
				then, abort = func() { c.sealSoon(reply) }, func(err error) { reply <- err }
			case p := <-c.payments:
				then = func() { c.postPayments(p) }
				abort = func(err error) { p.reply <- fmt.Errorf("payment not posted: %w", err) }
			case r := <-c.feedReq:
				// Installed once the batch is committed, before the next
				// one is prepared with the new chain of versions.
				then = func() { r.reply <- c.installFeed(ctx, r) }
				abort = func(err error) { r.reply <- scheduleReply{err: fmt.Errorf("feed version not scheduled: %w", err)} }
			default:
			}
		}
		// Committed only while this process holds the event consumer
		// (owner.go): a process frozen past its lease, then superseded,
		// applies nothing more.
		if err := c.holdLease(ctx); err != nil {
			pb.bt.txn.Discard()
			c.store.forgetUncommitted()
			if abort != nil {
				abort(err)
			}
			return err
		}
		if next == nil {
			if err := c.store.commit(pb); err != nil {
				if abort != nil {
					abort(err)
				}
				return err
			}
			c.store.committed(pb, &c.cur)
			c.finishBatch(ctx, vb, pb.res)
			if then != nil {
				then() // the store has every batch: acked or not, they are durable
			}
			return nil
		}
		txn := c.store.db.NewTransaction(true) // before pb commits: see batchTxn
		done := c.store.commitAsync(pb)
		npb, perr := c.store.prepare(txn, pb.bt.wrote, next.cands, pb.next, now.UTC())
		if err := <-done; err != nil {
			if perr == nil {
				npb.bt.txn.Discard()
			}
			c.store.forgetUncommitted()
			return err
		}
		c.store.committed(pb, &c.cur)
		if !c.finishBatch(ctx, vb, pb.res) {
			if perr == nil {
				npb.bt.txn.Discard()
				c.store.forgetUncommitted() // they hold the discarded batch's writes
			}
			return nil
		}
		if perr != nil {
			return fmt.Errorf("apply %d events: %w", len(next.msgs), perr)
		}
		vb, pb = next, npb
	}
}

// finishBatch puts a committed batch's quarantined messages in the
// quarantine stream, acks the batch and confirms it to its terminals. It
// returns false, the batch not acked, only when ctx ends first or this
// process lost the event consumer: the batch is redelivered after a
// restart and found applied (or applied by the process that took over).
func (c *Clearing) finishBatch(ctx context.Context, vb *verifiedBatch, res applyResult) bool {
	msgs, cands, start, n := vb.msgs, vb.cands, vb.start, len(vb.msgs)
	// The batch is acked only once its quarantined messages are in the
	// quarantine stream: the next batch's ack would cover this one too.
	retry := retrySchedule(250*time.Millisecond, 5*time.Second)
	for {
		err := c.quarantine(ctx, msgs, cands, res)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		wait := retry.NextBackOff()
		c.log.Error("quarantine publish failed; retrying before the batch is acked", "err", err, "retry_in", wait)
		sleep(ctx, wait)
	}
	// Held again before the ack and the confirmations: a process paused
	// between its commit and here (past its lease) must neither remove
	// the events from the stream nor have the gates delete them, should
	// another have taken over meanwhile (an outside review); its
	// successor applies them from the stream.
	if err := c.holdLease(ctx); err != nil {
		return false
	}
	if err := msgs[n-1].Ack(); err != nil {
		c.log.Warn("ack batch", "err", err)
	}
	if res.duplicate > 0 {
		c.countDuplicates(msgs, cands, res.outcomes)
	}
	c.applied.Add(uint64(res.applied))
	c.duplicates.Add(uint64(res.duplicate))
	c.rejected.Add(uint64(res.rejected))
	c.priced.Add(uint64(res.pricing.Priced))
	c.unpriced.Add(uint64(res.pricing.Unpriced))
	for range min(res.pricing.Unpriced, 1000) { // counted by tap, not by batch (the summary's total)
		c.unpricedLog.Add("unpriced", res.pricing.LastError)
	}
	c.announce(res.touched)
	if c.metrics != nil {
		c.metrics.observe(res, cands, c.cfg.FareClock(), c.cfg.FareClockRate, time.Since(start))
	}
	return true
}

// price is the flat fare per operator: charged on accepted entries and
// validations, never on exits or denied taps.
func (c *Clearing) price(e *fare.Event) fare.Amount {
	if e.Decision != fare.Accepted || e.Direction == fare.Exit {
		return 0
	}
	op, ok := c.cfg.Registry.Operator(e.Operator)
	if !ok {
		return 0
	}
	return op.FlatFare
}

func (c *Clearing) quarantine(ctx context.Context, msgs []jetstream.Msg, cands []candidate, res applyResult) error {
	var futures []jetstream.PubAckFuture
	for i, o := range res.outcomes {
		if o != Quarantined {
			continue
		}
		if res.reasons[i] == ReasonSequenceReplayed {
			c.checkSequenceConflict(&cands[i], &res.reasons[i])
		}
		f, err := c.js.PublishMsgAsync(quarantineMsg(fare.QuarantineSubject, msgs[i], res.reasons[i], cands[i].detail, sentAt(msgs[i], c.cfg.VerifierPartitions > 0)))
		if err != nil {
			return fmt.Errorf("quarantine message %d: %w", i, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("quarantine publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("quarantine publish: no ack in 10s")
		}
	}
	if len(futures) > 0 {
		c.quarantined.Add(uint64(len(futures)))
		c.whyMu.Lock()
		for i, o := range res.outcomes {
			if o == Quarantined {
				c.why[res.reasons[i]]++
			}
		}
		c.whyMu.Unlock()
		for i, o := range res.outcomes {
			if o == Quarantined {
				c.rejects.Add(res.reasons[i], cands[i].detail+" (subject "+msgs[i].Subject()+")")
			}
		}
	}
	return nil
}

// quarantineSubjectHeader carries a quarantined message's subject.
const quarantineSubjectHeader = "Faregate-Subject"

// quarantineMsg is the quarantine stream's copy of m, with why and when
// the terminal sent it (sentAt), to be published on subject:
// fare.QuarantineSubject (clearing's own) or a verifier partition's
// (VerifierQuarantineSubject).
func quarantineMsg(subject string, m jetstream.Msg, reason, detail string, sent time.Time) *nats.Msg {
	data := m.Data()
	sum := sha256.Sum256(data)
	q := nats.NewMsg(subject)
	q.Data = data
	q.Header.Set(fare.HeaderReason, reason)
	q.Header.Set(fare.HeaderDetail, detail)
	q.Header.Set(quarantineSubjectHeader, m.Subject())
	q.Header.Set(sentHeader, sent.UTC().Format(time.RFC3339Nano))
	q.Header.Set(nats.MsgIdHdr, "q-"+hex.EncodeToString(sum[:16]))
	return q
}

// announce records the batch's new watermarks and hands the terminals'
// confirmations to the announcer; they are hints, terminals also ask
// (answerConfirmation).
func (c *Clearing) announce(touched map[string]*touch) {
	c.wmMu.Lock()
	opened := 0
	for term, t := range touched {
		hadGap := c.highest[term] > c.watermarks[term]
		if t.to > c.watermarks[term] {
			c.watermarks[term] = t.to
		}
		c.highest[term] = max(c.highest[term], t.maxSeq, t.to)
		if !hadGap && c.highest[term] > c.watermarks[term] {
			opened++
		}
	}
	c.wmMu.Unlock()
	c.metrics.gapsOpen(opened)
	c.announcements <- touched
}

// announcer signs and publishes confirmations off the consume loop, so
// signing overlaps the next batch's fetch, verification and fsync. It
// drains what is queued before it returns.
func (c *Clearing) announcer() {
	for touched := range c.announcements {
		// Only while this process owns the store's consumer: a process
		// paused past its lease (a GC stall, a frozen VM) while a copy
		// of its data dir took over would confirm what the new owner's
		// store may lack, and the gates would delete it (an outside
		// static review). The lease was held at the batch's ack; this
		// narrows the window to the publish. Terminals ask again.
		if c.leaseLapsed() {
			c.log.Warn("confirmations not sent: this process's hold on the event consumer lapsed (the terminals ask again)", "terminals", len(touched))
			continue
		}
		now := c.cfg.Now()
		for term, t := range touched {
			if c.cfg.plain {
				_ = c.nc.Publish(fare.AppliedSubject(term), strconv.AppendUint(nil, t.to, 10))
				continue
			}
			var b []byte
			var err error
			switch {
			case t.minSeq <= t.from:
				// A resend (duplicates) starts below the old watermark:
				// confirm from where the terminal evidently stands.
				if !c.mayReadRange(term) {
					continue // it asks too
				}
				b, err = c.signConfirmation(term, t.minSeq-1, t.to, max(t.maxSeq, t.to), now, nil)
			case t.confirmTo > t.from:
				conf := fare.Confirmation{Terminal: term, From: t.from, Watermark: t.confirmTo, Digest: t.digest,
					Highest: max(t.maxSeq, t.to), IssuedAt: now.UTC(), Rejected: t.rejected}
				if c.wantsRange(term) {
					conf.HasRange, conf.RangeDigest = true, t.rangeDigest
				}
				b, err = c.sign(&conf)
			default:
				continue // no progress: a gap; remindGaps tells the terminal
			}
			if err != nil {
				c.log.Error("confirmation", "terminal", term, "err", err)
				continue
			}
			_ = c.nc.Publish(fare.AppliedSubject(term), b)
		}
	}
}

// seal closes the open period at its end, sealAt, if it has events and
// wakes the committer; only while this process holds the event consumer
// (a superseded one seals nothing: its batch ids would be the new
// owner's). It is called once sealAt has come, before anything more is
// applied, so every event in the period was applied before its end and
// every later one at or after it: the period's bounds, whole seconds as
// the chain keeps them, hold exactly its events (an outside test saw 2% of
// events applied after their batch's end, which was the seal's time cut
// to the second).
func (c *Clearing) seal() (err error) {
	defer func() { c.answerSeal(err) }()
	if fresh, err := c.leaseFresh(); err != nil || !fresh {
		return err // not fresh: sealed at a later turn, once renewed
	}
	start := time.Now()
	rec, err := c.store.closePeriod(&c.cur, c.sealAt)
	if err != nil {
		return err
	}
	if rec != nil {
		took := time.Since(start)
		c.metrics.sealed(took)
		c.sealed.Add(1)
		c.log.Info("period sealed", "batch", rec.ID, "events", rec.EventCount, "root", hexRoot(rec.Root), "took", took.Round(time.Millisecond))
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	c.sealAt = c.periodEnd(c.cfg.Now().Add(c.cfg.Period))
	return nil
}

// periodEnd is the open period's end for a seal due at t: t rounded up to
// a whole second, after the period's start.
func (c *Clearing) periodEnd(t time.Time) time.Time {
	e := t.UTC().Truncate(time.Second)
	if e.Before(t) {
		e = e.Add(time.Second)
	}
	if !e.After(c.cur.period.Start) {
		e = c.cur.period.Start.Add(time.Second)
	}
	return e
}

// sealSoon brings the open period's end to the next whole second after
// now, if it is later, and has reply answered once the period is sealed:
// the events applied until then are in it (Settle).
func (c *Clearing) sealSoon(reply chan error) {
	if e := c.periodEnd(c.cfg.Now().Truncate(time.Second).Add(time.Second)); e.Before(c.sealAt) {
		c.sealAt = e
	}
	c.sealWaiters = append(c.sealWaiters, reply)
}

// answerSeal answers the Settle calls waiting for the seal.
func (c *Clearing) answerSeal(err error) {
	for _, reply := range c.sealWaiters {
		reply <- err
	}
	c.sealWaiters = nil
}

func (c *Clearing) commitLoop(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		if _, err := c.commitPending(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("commit batches to ledger", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-tick.C:
		}
	}
}

func (c *Clearing) commitPending(ctx context.Context) (int, error) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	// Anchored only while this process holds the event consumer, as
	// sealed: a superseded one anchors nothing.
	if err := c.holdLease(ctx); err != nil {
		return 0, fmt.Errorf("commit batches: %w", err)
	}
	n, err := c.store.commitPending(ctx, c.metrics.timed(c.cfg.Ledger), c.cfg.Now, func(rec *BatchRecord, cr CommitRecord) {
		attrs := []any{"batch", rec.ID, "events", rec.EventCount,
			"period_start", rec.PeriodStart.Format(time.RFC3339), "period_end", rec.PeriodEnd.Format(time.RFC3339),
			"root", fmt.Sprintf("0x%x", rec.Root), "tx", fmt.Sprintf("0x%x", cr.TxHash), "block", cr.BlockNumber}
		if cr.Recovered {
			// Sent and mined before it was recorded here: by a run
			// stopped first, or by this one while its node did not
			// answer (an outside review's node restarted mid-commit).
			attrs = append(attrs, "recovered", "found on the ledger as sealed here: its commit was mined before it could be recorded (a restart of clearing, or of the node, in between)", "block_time", cr.At.UTC().Format(time.RFC3339))
		} else {
			attrs = append(attrs, "gas", cr.GasUsed)
		}
		c.log.Info("batch committed to the ledger", attrs...)
	})
	c.committed.Add(uint64(n))
	if c.metrics != nil {
		c.metrics.batchesCommitted.Add(float64(n))
		if err != nil && ctx.Err() == nil {
			// Any failed attempt: a ledger that cannot even be asked
			// which batch comes next is the commonest failure of all.
			c.metrics.commitErrors.Inc()
		}
	}
	c.noteCommit(err, ctx.Err() != nil)
	return n, err
}

// commitFailGrace is how long commits may fail in a row before Ready says
// so: a ledger that is slow once is not a reason to take clearing out.
const commitFailGrace = 15 * time.Second

// noteCommit records whether the last commit attempt failed (a cancelled
// one says nothing).
func (c *Clearing) noteCommit(err error, cancelled bool) {
	if cancelled {
		return
	}
	c.commitStateMu.Lock()
	defer c.commitStateMu.Unlock()
	if err == nil {
		c.commitFailingSince, c.commitErr = time.Time{}, nil
		return
	}
	if c.commitFailingSince.IsZero() {
		c.commitFailingSince = time.Now()
	}
	c.commitErr = err
}

// commitFailure says, for Ready, since when and why commits have failed,
// once for longer than commitFailGrace ("" otherwise).
func (c *Clearing) commitFailure() string {
	c.commitStateMu.Lock()
	defer c.commitStateMu.Unlock()
	if c.commitFailingSince.IsZero() {
		return ""
	}
	if d := time.Since(c.commitFailingSince); d >= commitFailGrace {
		return fmt.Sprintf("ledger commits failing for %s: %v", d.Round(time.Second), c.commitErr)
	}
	return ""
}

// Settle seals the open period now and commits every sealed batch to the
// ledger before returning. Run must be running.
func (c *Clearing) Settle(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case c.sealReq <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	_, err := c.commitPending(ctx)
	return err
}

// Close stops Run, if it is running, and waits for it; then it stops NATS
// and closes the store.
func (c *Clearing) Close() error {
	c.runs.Close()
	c.releaseConsumer()
	if c.wmSub != nil {
		_ = c.wmSub.Unsubscribe()
	}
	if c.feeds != nil {
		_ = c.feeds.sub.Unsubscribe()
		_ = c.feeds.fc.Unsubscribe()
		_ = c.feeds.junk.Unsubscribe()
	}
	if c.denySub != nil {
		_ = c.denySub.Unsubscribe()
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
	}
	var err error
	if c.faces != nil {
		err = c.faces.close()
	}
	if c.store != nil {
		err = errors.Join(err, c.store.Close())
	}
	return err
}

// retrySchedule is clearing's schedule for a retry: from first, doubling
// with ±20% jitter, up to most.
func retrySchedule(first, most time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: first, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: most}
	b.Reset()
	return b
}

// clockOfDay writes seconds after midnight as hh:mm:ss.
func clockOfDay(s int32) string { return fmt.Sprintf("%02d:%02d:%02d", s/3600, s%3600/60, s%60) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// feedFitsRegistry checks that a feed prices in the registry's money and for
// its operators. Every fare product must be in the registry's currency
// (amounts are booked as minor units of it), and at least one agency must
// be an operator; agencies that are not are returned: a share posted to one
// could never be anchored (the contract refuses an unknown operator), so
// the caller warns.
//
// From on, for a week, every gate the feed knows is tried at every hour
// (fares.Feed.UnpricedHours): a gate with hours no rule prices for a rider
// in no category is returned too, for a warning (a timeframe or network
// the feed's rules miss: such a tap's journey would charge nothing, a
// transfer joining it included).
func feedFitsRegistry(feed *fares.Feed, reg *Registry, from time.Time) (fit feedFit, err error) {
	if feed == nil || reg == nil {
		return fit, nil
	}
	var errs []string
	if feed.LegRules() == 0 {
		// Every tap would be applied unpriced, free of charge.
		errs = append(errs, "fare_leg_rules.txt is missing or empty: the feed prices no leg")
	}
	errs = append(errs, feedCurrencyMisfits(feed, reg.Currency)...)
	if starts := feed.CapDayStarts(); len(starts) > 1 {
		// Live pricing books a rider's taps by fare day, the earliest
		// start: a cap whose days begin later would straddle two of them
		// and could be exceeded.
		names := make([]string, len(starts))
		for i, st := range starts {
			names[i] = fmt.Sprintf("%s (%s)", clockOfDay(st.Start), st.CapID)
		}
		errs = append(errs, fmt.Sprintf("fare_caps.txt: caps begin their days at different times, %s: live pricing books a rider by one fare day, so give every daily and weekly cap the same day_start_time", strings.Join(names, ", ")))
	}
	if !feed.PricesUnenrolled() {
		errs = append(errs, fmt.Sprintf("rider_categories.txt marks no category the default (is_default_fare_category 1) and every product a fare leg rule sells is for a category (%s): a rider enrolled in none would match no leg's product and travel free", strings.Join(feed.RiderCategories(), ", ")))
	}
	agencies := feed.Agencies()
	for _, a := range agencies {
		if _, ok := reg.Operator(a); !ok {
			fit.strangers = append(fit.strangers, a)
		}
	}
	if len(fit.strangers) == len(agencies) {
		errs = append(errs, fmt.Sprintf("agency.txt: no agency_id (%s) is an operator of the registry (%s)", strings.Join(agencies, ", "), strings.Join(reg.OperatorIDs(), ", ")))
	}
	for _, op := range reg.OperatorIDs() {
		if !slices.Contains(agencies, op) {
			fit.agencyless = append(fit.agencyless, op)
		}
	}
	// The gates: what the registry says each one's taps ride.
	listed := make(map[string]bool, len(reg.Terminals))
	for _, t := range reg.Terminals {
		listed[t.ID] = true
	}
	legs := make(map[string]TerminalLeg, len(reg.Legs))
	for _, l := range reg.Legs {
		if len(reg.Terminals) > 0 && !listed[l.Terminal] {
			errs = append(errs, fmt.Sprintf("registry leg for terminal %q, which the registry does not list", l.Terminal))
		}
		legs[l.Terminal] = l
	}
	tried := map[[4]string]bool{}
	priced := 0 // gates the feed prices an entry at in some hour of the week
	for _, t := range reg.Terminals {
		l := legs[t.ID]
		gate := [4]string{t.Stop, l.Network, l.Route, t.Operator}
		if tried[gate] {
			continue // said for the first gate there
		}
		tried[gate] = true
		hours, err := feed.UnpricedHours(t.Stop, l.Network, l.Route, t.Operator, from)
		if err == nil && len(hours) < 7*24 {
			priced++
		}
		switch {
		case errors.Is(err, fares.ErrRouteOfAnotherAgency):
			// Every fare of the gate would go to another operator.
			errs = append(errs, fmt.Sprintf("terminal %s: %v", t.ID, err))
		case err != nil:
			// A gate the feed does not know yet (a new stop or route) is
			// no reason to stop clearing: its taps are applied unpriced,
			// revenue to review; said at start.
			fit.unpricedGates = append(fit.unpricedGates, fmt.Sprintf("%s (stop %s): %v", t.ID, t.Stop, err))
		case len(hours) > 0:
			// Which medium card taps are priced as is said: a feed whose
			// first card medium is not the one its products are sold for
			// prices every card tap at nothing (an outside test looked at
			// rules and timeframes first).
			medium := "no fare medium: only products without fare_media_id"
			switch m := feed.MediumFor("card"); m {
			case "":
			case "card":
				medium = "fare medium card"
			default:
				medium = fmt.Sprintf("fare medium %s, the feed's first of type 2 (else 3), none being named card", m)
			}
			fit.gaps = append(fit.gaps, fmt.Sprintf("%s (stop %s): no fare for an entry there (a rider in no category paying by card, priced as %s) in %d of the %d hours of the week from %s, the first at %s",
				t.ID, t.Stop, medium, len(hours), 7*24, from.In(feed.Location()).Format(time.DateOnly), hours[0].Format(time.RFC3339)))
		}
	}
	if day, idle, ok := feed.TimeframesRunOut(from, timeframeWarnDays); ok && day > feed.FareDay(from) {
		fit.idle = fmt.Sprintf("timeframes.txt names services that run on no day from %s on, in %d days (%s): from then fare leg rules with those timeframes match nothing, and the rules without a timeframe price instead (peak, off-peak or weekend fares change); extend calendar.txt (or calendar_dates.txt), or schedule a new feed version before then",
			feed.FareDayBegins(day).Format(time.DateOnly), day-feed.FareDay(from), strings.Join(idle, ", "))
	} else if idle := feed.IdleTimeframeServices(from); len(idle) > 0 {
		fit.idle = fmt.Sprintf("timeframes.txt names services that run on no day from %s on (%s): fare leg rules with those timeframes never match again, so their fares (peak, off-peak, weekend) are left out and the rules without a timeframe price instead (has calendar.txt run out? calendar_dates.txt can extend it)",
			from.In(feed.Location()).Format(time.DateOnly), strings.Join(idle, ", "))
	}
	if len(tried) > 0 && priced == 0 {
		// Every tap would be applied free, unpriced: a feed of another
		// city, or a registry whose stops the feed does not name (an
		// outside review saw clearing start with a warning only). A new
		// gate the feed does not know yet is not this: others are priced.
		why := "is it this city's feed, and do the registry's stops and legs name the feed's stops, routes and networks?"
		if fit.idle != "" {
			why = fit.idle
		}
		errs = append(errs, fmt.Sprintf("the feed prices an entry at none of the registry's %d gates in any hour of the week from %s (a rider in no category paying by card): every tap would be applied free; %s",
			len(reg.Terminals), from.In(feed.Location()).Format(time.DateOnly), why))
	}
	if len(errs) > 0 {
		return fit, errors.New(strings.Join(errs, "; "))
	}
	return fit, nil
}

// feedCurrencyMisfits says, per file, where feed prices in another
// currency than cur.
func feedCurrencyMisfits(feed *fares.Feed, cur string) []string {
	var errs []string
	for _, u := range feed.CurrencyUses() {
		if u.Currency == cur {
			continue
		}
		what, why := "fare product", ""
		if u.File == "fare_caps.txt" {
			what, why = "fare cap", " (such a cap would never apply)"
		}
		others := ""
		if u.Count > 1 {
			others = fmt.Sprintf(" and %d more rows", u.Count-1)
		}
		errs = append(errs, fmt.Sprintf("%s: currency %s (%s %q%s), the registry settles in %s%s", u.File, u.Currency, what, u.ID, others, cur, why))
	}
	return errs
}

// CheckFeedCurrency refuses a feed pricing in another currency than cur
// (what clearing refuses at start; the audit checks the feed it is given).
func CheckFeedCurrency(feed *fares.Feed, cur string) error {
	if errs := feedCurrencyMisfits(feed, cur); len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrCurrencyMismatch, strings.Join(errs, "; "))
	}
	return nil
}

// timeframeWarnDays is how far ahead clearing looks, at start and when a
// feed version is scheduled, for the services of the feed's timeframes
// running out (an outside test saw a calendar.txt end eight days after
// start change evening fares, unsaid); each new fare day it looks
// timeframeWatchDays ahead (watchTimeframes).
const (
	timeframeWarnDays  = 60
	timeframeWatchDays = 14
)

// feedFit is what a feed that fits the registry still leaves open: the
// feed's agencies that are no operators, the gates whose taps it cannot
// price (each with why), and timeframes whose services do not run.
type feedFit struct {
	strangers     []string
	agencyless    []string // the registry's operators the feed has no agency for
	unpricedGates []string
	gaps          []string // gates with hours no rule prices
	idle          string   // timeframes' services idle for the week checked
}

// CheckFeeds checks a fare feed (and the next version, taking effect at
// nextFrom) against what live pricing supports and against the registry:
// Open does, and the command line before it deploys or opens anything, so
// that a feed that does not fit is refused before the chain is touched.
// Agencies of the feed that are no operators of the registry are logged,
// not refused.
func CheckFeeds(feed, next *fares.Feed, nextFrom time.Time, reg *Registry, log *slog.Logger) error {
	for _, f := range []struct {
		what string
		feed *fares.Feed
		from time.Time
	}{{"feed", feed, time.Now()}, {"next feed", next, nextFrom}} {
		fit, err := feedFitsRegistry(f.feed, reg, f.from)
		if err != nil {
			return fmt.Errorf("clearing: the %s does not fit the registry: %w", f.what, err)
		}
		if len(fit.strangers) > 0 {
			log.Warn("the feed's agencies include some that are not operators of the registry: a fare share for one could not be anchored on the ledger",
				"feed", f.what, "agencies", strings.Join(fit.strangers, ", "))
		}
		if len(fit.agencyless) > 0 {
			// An operator's gates then ride no agency's routes: its
			// stations' taps price only by rules without one, or not at
			// all (an outside test saw nothing said).
			log.Warn("the registry has operators that are no agency of the feed: the feed prices none of their routes, and their gates' taps only by rules that name no route or network of theirs",
				"feed", f.what, "operators", strings.Join(fit.agencyless, ", "))
		}
		if len(fit.unpricedGates) > 0 {
			log.Warn("the feed cannot price the taps of some gates: they are applied unpriced (revenue to review) until the feed or the registry's legs say what they ride",
				"feed", f.what, "gates", strings.Join(fit.unpricedGates, "; "))
		}
		if len(fit.gaps) > 0 {
			log.Warn("the feed's fare leg rules miss some hours at some gates: a journey entering there has no fare and charges nothing (applied, said unpriced; only the entry is tried: a journey ending there may be priced)",
				"feed", f.what, "gates", strings.Join(fit.gaps, "; "))
		}
		if fit.idle != "" {
			log.Warn("the feed's timeframes do not run, or stop running soon: fares priced without them", "feed", f.what, "why", fit.idle)
		}
	}
	if next != nil {
		switch {
		case feed == nil:
			return errors.New("clearing: a next feed version needs a current one (--feed)")
		case next.Location().String() != feed.Location().String() || next.FareDayStart() != feed.FareDayStart():
			return fmt.Errorf("clearing: the next feed's fare days (%s, from %ds after midnight) differ from the current feed's (%s, from %ds): a rider's day would change its bounds",
				next.Location(), next.FareDayStart(), feed.Location(), feed.FareDayStart())
		case nextFrom.IsZero():
			return errors.New("clearing: a next feed version needs the time it takes effect")
		}
	}
	return nil
}
