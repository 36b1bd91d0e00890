// Package terminal is the agent on each turnstile. It decides a tap locally,
// within the gate's time budget and without the network if need be, writes
// the signed fare event to a durable Badger outbox before the gate opens,
// and streams the outbox to NATS JetStream until clearing confirms, through
// its applied-sequence watermark, that the event is durably applied.
package terminal

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// Config configures a terminal.
type Config struct {
	ID       string
	Operator string
	Stop     string
	Key      ed25519.PrivateKey
	// DataDir holds the Badger outbox.
	DataDir string
	// NATSURL is the clearing house's NATS server or cluster. The terminal
	// starts and takes taps without it.
	NATSURL string
	// Deny lists card tokens refused at the gate (hot list).
	Deny DenyList
	// ResendAfter is how long an unconfirmed event waits before the
	// terminal sends again from its watermark; it doubles up to a minute
	// while clearing makes no progress. Default 3s.
	ResendAfter time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// DenyList answers whether a card token is refused.
type DenyList interface {
	Denied(token string) bool
}

// TokenSet is a DenyList held in memory.
type TokenSet map[string]struct{}

// Denied reports whether token is in the set.
func (s TokenSet) Denied(token string) bool { _, ok := s[token]; return ok }

// Tap is what the gate's reader saw.
type Tap struct {
	Gate          string
	Direction     fare.Direction
	Media         fare.MediaKind
	Token         string // card token, or the subject id biometrics matched
	RiderCategory string
	Time          time.Time // zero: the terminal's clock
}

// Terminal is one running turnstile agent.
type Terminal struct {
	cfg Config
	log *slog.Logger
	db  *badger.DB
	nc  *nats.Conn
	js  jetstream.JetStream

	taps    chan tapReq
	written chan struct{} // wakes the sender after an outbox write
	marks   chan uint64   // watermark announcements
	stop    chan struct{}
	wg      sync.WaitGroup

	lastSeq   atomic.Uint64 // highest sequence written to the outbox
	confirmed atomic.Uint64 // clearing's watermark as last seen
	published atomic.Uint64
	closeOnce sync.Once
}

type tapReq struct {
	tap   Tap
	reply chan tapResult
}

type tapResult struct {
	ev  fare.Event
	err error
}

var (
	keyLastSeq   = []byte("mlast-seq")
	keyConfirmed = []byte("mconfirmed")
)

func outboxKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = 'o'
	binary.BigEndian.PutUint64(k[1:], seq)
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
	if cfg.ResendAfter <= 0 {
		cfg.ResendAfter = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Deny == nil {
		cfg.Deny = TokenSet{}
	}
	// Small tables: a city runs thousands of terminals, a simulator dozens
	// in one process, and an outbox holds minutes of taps.
	opts := badger.DefaultOptions(cfg.DataDir).
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
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open outbox of terminal %s: %w", cfg.ID, err)
	}
	t := &Terminal{
		cfg: cfg, log: cfg.Logger.With("terminal", cfg.ID), db: db,
		taps: make(chan tapReq, 256), written: make(chan struct{}, 1),
		marks: make(chan uint64, 16), stop: make(chan struct{}),
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
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read outbox of terminal %s: %w", cfg.ID, err)
	}
	t.wg.Add(1)
	go t.writeLoop()
	return t, nil
}

// ID is the terminal's id.
func (t *Terminal) ID() string { return t.cfg.ID }

// PublicKey is the key to register for this terminal.
func (t *Terminal) PublicKey() ed25519.PublicKey { return t.cfg.Key.Public().(ed25519.PublicKey) }

// Pending is how many events wait in the outbox for clearing's confirmation.
func (t *Terminal) Pending() uint64 { return t.lastSeq.Load() - t.confirmed.Load() }

// LastSequence is the highest sequence number the terminal has used.
func (t *Terminal) LastSequence() uint64 { return t.lastSeq.Load() }

// Confirmed is clearing's watermark as this terminal last heard it.
func (t *Terminal) Confirmed() uint64 { return t.confirmed.Load() }

// Published counts publish attempts, resends included.
func (t *Terminal) Published() uint64 { return t.published.Load() }

// ErrClosed is returned by Tap after Close.
var ErrClosed = errors.New("terminal closed")

// Tap decides a tap, signs the event and makes it durable in the outbox
// before returning: when Tap returns nil the gate may open and the event
// will reach clearing eventually, across crashes and outages.
func (t *Terminal) Tap(ctx context.Context, tap Tap) (fare.Event, error) {
	req := tapReq{tap: tap, reply: make(chan tapResult, 1)}
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
	select {
	case r := <-req.reply:
		return r.ev, r.err
	case <-t.stop:
		select {
		case r := <-req.reply:
			return r.ev, r.err
		default:
			return fare.Event{}, ErrClosed
		}
	case <-ctx.Done():
		// The write may still land; the sequence is then simply used.
		return fare.Event{}, ctx.Err()
	}
}

// decide is the gate's local decision: pure, no I/O.
func (t *Terminal) decide(tap Tap) (fare.Decision, string) {
	switch tap.Media {
	case fare.Card:
		if t.cfg.Deny.Denied(tap.Token) {
			return fare.Denied, "deny-list"
		}
		return fare.Accepted, "card"
	case fare.Face:
		return fare.Accepted, "face"
	}
	return fare.Denied, "unknown-media"
}

// writeLoop is the outbox's single writer: it takes every tap waiting,
// numbers, signs and writes them in one synced transaction (group commit),
// so a busy gate pays one fsync per group rather than per passenger.
func (t *Terminal) writeLoop() {
	defer t.wg.Done()
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
	results := make([]tapResult, len(reqs))
	seq := t.lastSeq.Load()
	txn := t.db.NewTransaction(true)
	defer txn.Discard()
	now := t.cfg.Now()
	for i, r := range reqs {
		at := r.tap.Time
		if at.IsZero() {
			at = now
		}
		dec, why := t.decide(r.tap)
		ev := fare.Event{
			ID: fare.NewEventID(at), Terminal: t.cfg.ID, Operator: t.cfg.Operator, Stop: t.cfg.Stop,
			Gate: r.tap.Gate, Direction: r.tap.Direction, Media: r.tap.Media, MediaToken: r.tap.Token,
			RiderCategory: r.tap.RiderCategory, DeviceTime: at.UTC(), Decision: dec, Reason: why,
			Sequence: seq + 1,
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
			err = txn.Commit()
		}
	}
	if err != nil {
		err = fmt.Errorf("terminal %s outbox commit: %w", t.cfg.ID, err)
		for i := range results {
			if results[i].err == nil {
				results[i] = tapResult{err: err}
			}
		}
	} else {
		t.lastSeq.Store(seq)
		select {
		case t.written <- struct{}{}:
		default:
		}
	}
	for i, r := range reqs {
		r.reply <- results[i]
	}
}

// Run connects to NATS and streams the outbox until ctx is done. Events are
// published with Nats-Msg-Id = event id so JetStream drops resends inside
// its window; clearing's permanent dedup handles the rest. Without progress
// from clearing the terminal goes back to its watermark and sends again.
func (t *Terminal) Run(ctx context.Context) error {
	nc, err := nats.Connect(t.cfg.NATSURL,
		nats.Name("faregate-terminal-"+t.cfg.ID),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { t.log.Info("reconnected to NATS") }),
	)
	if err != nil {
		return fmt.Errorf("terminal %s: connect NATS %s: %w", t.cfg.ID, t.cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		return fmt.Errorf("terminal %s: jetstream: %w", t.cfg.ID, err)
	}
	sub, err := nc.Subscribe(fare.AppliedSubject(t.cfg.ID), func(m *nats.Msg) {
		if w, err := strconv.ParseUint(string(m.Data), 10, 64); err == nil {
			select {
			case t.marks <- w:
			default:
			}
		}
	})
	if err != nil {
		return fmt.Errorf("terminal %s: subscribe: %w", t.cfg.ID, err)
	}
	defer sub.Unsubscribe()

	s := sender{t: t, js: js, nc: nc, next: t.confirmed.Load() + 1, backoff: t.cfg.ResendAfter, progressAt: time.Now()}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	ask := time.NewTicker(time.Second)
	defer ask.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case w := <-t.marks:
			s.confirm(w)
		case <-ask.C:
			if t.Pending() > 0 {
				s.askWatermark(ctx)
			}
		case <-t.written:
		case <-tick.C:
		}
		if err := s.send(); err != nil {
			t.log.Warn("publish", "err", err)
		}
	}
}

// sender is Run's state; only Run's goroutine touches it.
type sender struct {
	t          *Terminal
	js         jetstream.JetStream
	nc         *nats.Conn
	next       uint64 // next sequence to publish
	backoff    time.Duration
	progressAt time.Time
}

func (s *sender) askWatermark(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	m, err := s.nc.RequestWithContext(rctx, fare.WatermarkSubject(s.t.cfg.ID), nil)
	if err != nil {
		return // clearing unreachable: keep the outbox, try later
	}
	if w, err := strconv.ParseUint(string(m.Data), 10, 64); err == nil {
		s.confirm(w)
	}
}

// confirm drops everything up to w from the outbox.
func (s *sender) confirm(w uint64) {
	t := s.t
	old := t.confirmed.Load()
	if w <= old {
		return
	}
	if w > t.lastSeq.Load() {
		t.log.Error("clearing confirms sequences this terminal never wrote; ignoring", "watermark", w, "last", t.lastSeq.Load())
		return
	}
	err := t.db.Update(func(txn *badger.Txn) error {
		for seq := old + 1; seq <= w; seq++ {
			if err := txn.Delete(outboxKey(seq)); err != nil {
				return err
			}
		}
		return setU64(txn, keyConfirmed, w)
	})
	if errors.Is(err, badger.ErrTxnTooBig) {
		// Huge backlog confirmed at once: drop it in steps.
		step := old + (w-old)/2
		s.confirm(step)
		s.confirm(w)
		return
	}
	if err != nil {
		t.log.Error("outbox confirm", "watermark", w, "err", err)
		return
	}
	t.confirmed.Store(w)
	if s.next <= w {
		s.next = w + 1
	}
	s.progressAt = time.Now()
	s.backoff = t.cfg.ResendAfter
}

// maxPerRound bounds publishes per wake-up so confirmations interleave.
const maxPerRound = 2048

func (s *sender) send() error {
	t := s.t
	conf := t.confirmed.Load()
	if conf < t.lastSeq.Load() && s.next > conf+1 && time.Since(s.progressAt) > s.backoff {
		// Sent but unconfirmed for too long: go back to the watermark.
		s.next = conf + 1
		s.progressAt = time.Now()
		s.backoff = min(2*s.backoff, time.Minute)
	}
	last := t.lastSeq.Load()
	if s.next > last || !s.nc.IsConnected() {
		return nil
	}
	var perr error
	err := t.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{'o'}})
		defer it.Close()
		n := 0
		for it.Seek(outboxKey(s.next)); it.Valid() && n < maxPerRound; it.Next() {
			seq := binary.BigEndian.Uint64(it.Item().Key()[1:])
			raw, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			ev, err := fare.Decode(raw)
			if err != nil {
				return fmt.Errorf("outbox entry %d: %w", seq, err)
			}
			m := nats.NewMsg(fare.EventSubject(t.cfg.Operator, t.cfg.ID))
			m.Data = raw
			m.Header.Set(nats.MsgIdHdr, ev.ID.String())
			if _, err := s.js.PublishMsgAsync(m); err != nil {
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

// Close stops the writer and closes the outbox. Cancel Run first.
func (t *Terminal) Close() error {
	var err error
	t.closeOnce.Do(func() {
		close(t.stop)
		t.wg.Wait()
		err = t.db.Close()
	})
	return err
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
