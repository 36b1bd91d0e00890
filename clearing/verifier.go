package clearing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// VerifierConfig configures one verifier process of a partition (see
// partitions.go).
type VerifierConfig struct {
	// NATSURL is the NATS server or cluster clearing uses (required);
	// NATSSeedFile the verifier's own NATS user seed (required: clearing
	// admits its public key with a verifier's permissions only); NATSCA the
	// CA file to trust for TLS.
	NATSURL, NATSSeedFile, NATSCA string
	// Ledger is where the terminal registry is read (the verifier makes no
	// transaction). Reopen, if set, opens it again after three registry
	// reads in a row failed: the JSON-RPC endpoint of clearing's embedded
	// chain moves to a new port each time clearing starts. The verifier
	// closes what Reopen gave (the previous one on the next reopen, the
	// last one in Close), never Ledger.
	Ledger ledger.Ledger
	Reopen func(ctx context.Context) (ledger.Ledger, error)
	// Partition is the partition this verifier works on, 0 to clearing's
	// VerifierPartitions - 1.
	Partition int
	// FetchBatch is how many events one fetch takes (default 1000);
	// Workers the goroutines verifying (default GOMAXPROCS).
	FetchBatch, Workers int
	// RegistryPoll is how often the registry is read (default 1 s).
	RegistryPoll time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// VerifierStats are a verifier's running totals.
type VerifierStats struct {
	// Forwarded events went to the verified stream; Quarantined ones to
	// the quarantine stream (junk: malformed, a subject not the signer's,
	// an unknown terminal, a bad signature), QuarantineByWhy by reason.
	Forwarded, Quarantined uint64
	QuarantineByWhy        map[string]uint64
}

// Verifier is a running verifier of one partition.
type Verifier struct {
	cfg       VerifierConfig
	log       *slog.Logger
	terminals *ChainTerminals
	nc        *nats.Conn
	js        jetstream.JetStream
	cons      jetstream.Consumer
	rejects   *fare.Tally
	fetchLog  *fare.Tally // fetch failures: one line, then a summary a 10 s
	natsLog   *fare.Tally // the NATS connection's trouble, said the same way
	// forwardLog: forwards refused (a verified stream changing leader
	// fails every event of a fetch), said the same way, not a line each.
	forwardLog *fare.Tally
	lastSync   time.Time // owned by Run's loop
	// syncFailures counts registry reads failed in a row; reopened is the
	// ledger Reopen gave (owned by Run's loop).
	syncFailures int
	reopened     ledger.Ledger

	forwarded, quarantined atomic.Uint64
	whyMu                  sync.Mutex
	why                    map[string]uint64
}

// ErrNoPartition is returned by OpenVerifier when clearing has not made
// the partition's consumer (clearing not started with that many verifier
// partitions).
var ErrNoPartition = errors.New("clearing: no such verifier partition")

// ErrNotAdmitted is returned by OpenVerifier when the verifier's NATS user
// is not admitted to the partition it was asked to work on.
var ErrNotAdmitted = errors.New("verifier: not admitted to this partition")

// OpenVerifier reads the terminal registry, connects to NATS and binds to
// the partition's consumer, which clearing made.
func OpenVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.NATSURL == "":
		return nil, errors.New("verifier: no NATS URL")
	case cfg.NATSSeedFile == "":
		return nil, errors.New("verifier: no NATS user seed file (its public key must be given to clearing with --verifier-key)")
	case cfg.Ledger == nil:
		return nil, errors.New("verifier: no ledger to read the terminal registry from")
	case cfg.Partition < 0 || cfg.Partition >= MaxVerifierPartitions:
		return nil, fmt.Errorf("verifier: partition %d, want 0 to %d", cfg.Partition, MaxVerifierPartitions-1)
	}
	if cfg.FetchBatch <= 0 {
		cfg.FetchBatch = 1000
	}
	if cfg.FetchBatch > MaxFetchBatch {
		return nil, fmt.Errorf("verifier: fetch batch %d: want at most %d events", cfg.FetchBatch, MaxFetchBatch)
	}
	if cfg.RegistryPoll <= 0 {
		cfg.RegistryPoll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "verifier", "partition", cfg.Partition)
	v := &Verifier{cfg: cfg, log: log, rejects: fare.NewTally(log, "messages quarantined"), why: make(map[string]uint64),
		fetchLog: fare.NewTally(log, "fetching events fails (retried every 250 ms)"), natsLog: fare.NewTally(log, "NATS connection trouble"),
		forwardLog: fare.NewTally(log, "forwarding events fails (each delivered again after 250 ms)")}
	v.terminals = NewChainTerminals(cfg.Ledger)
	v.terminals.Log = log
	if err := v.terminals.Sync(ctx); err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	id, err := loadNATSIdentity("verifier", cfg.NATSSeedFile)
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	// A user not admitted to this partition is refused the consumer's info
	// by the server, which says so only asynchronously: keep the first
	// such refusal to name it.
	var refused atomic.Pointer[error]
	opts := []nats.Option{nats.Name(fmt.Sprintf("faregate-verifier-%d", cfg.Partition)), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond), nats.CustomInboxPrefix(VerifierInbox(id.public)), id.option(),
		nats.PingInterval(fare.NATSPingInterval), nats.MaxPingsOutstanding(fare.NATSMaxPingsOut), // a frozen node, given up in seconds
		nats.IgnoreAuthErrorAbort(), // a refused reconnect is not the end (as clearing's)
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				refused.CompareAndSwap(nil, &err)
			}
			msg := err.Error()
			if strings.Contains(strings.ToLower(msg), "authorization violation") {
				msg += fmt.Sprintf(": the server refuses verifier user %s (admit it: faregate clearing --verifier-key %d=%s, or faregate nats config --verifier-key %d=%s, then reload the servers)",
					id.public, cfg.Partition, id.public, cfg.Partition, id.public)
			}
			v.natsLog.Add("error", msg)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				v.natsLog.Add("disconnected", err.Error())
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "url", fare.RedactURL(nc.ConnectedUrl()))
		})}
	if cfg.NATSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCA))
	}
	if v.nc, err = nats.Connect(cfg.NATSURL, opts...); err != nil {
		if errors.Is(err, nats.ErrAuthorization) {
			// The server does not know this user: clearing (or the
			// cluster's configuration) must admit it.
			return nil, fmt.Errorf("verifier: connect to NATS %s as %s: %w (admit this user: faregate clearing --verifier-key %d=%s, or faregate nats config --verifier-key %d=%s)",
				fare.RedactURLList(cfg.NATSURL), id.public, err, cfg.Partition, id.public, cfg.Partition, id.public)
		}
		return nil, fmt.Errorf("verifier: connect to NATS %s: %w", fare.RedactURLList(cfg.NATSURL), err)
	}
	if v.js, err = jetstream.NewWithAPIPrefix(v.nc, VerifierAPIPrefix, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(10*time.Second)); err != nil {
		v.Close()
		return nil, fmt.Errorf("verifier: jetstream: %w", err)
	}
	// Clearing answers the consumer's information (verifierapi.go): a
	// verifier started while clearing is down waits for it.
	for waited := false; ; waited = true {
		v.cons, err = v.js.Consumer(ctx, fare.EventStream, VerifierConsumer(cfg.Partition))
		unanswered := errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
			errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
		if !unanswered || refused.Load() != nil || ctx.Err() != nil {
			break
		}
		if !waited {
			log.Warn("no answer for the partition's consumer: waiting for clearing, which answers it, to run (if clearing is running: servers whose authorization was reloaded after this verifier's account was added or moved, as a changed --verifier-key does, may not route its requests until they are restarted)")
		}
		sleep(ctx, time.Second)
	}
	if err != nil {
		v.Close()
		if r := refused.Load(); r != nil {
			return nil, fmt.Errorf("%w: %s may not work on partition %d (%v); admit it to this partition: faregate clearing --verifier-partitions %d or more --verifier-key %d=%s on clearing's embedded server, or on servers of your own `faregate nats config --verifier-partitions %d or more --verifier-key %d=%s` and reload them",
				ErrNotAdmitted, id.public, cfg.Partition, *r, cfg.Partition+1, cfg.Partition, id.public, cfg.Partition+1, cfg.Partition, id.public)
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w: %d (is clearing running with --verifier-partitions %d or more?)", ErrNoPartition, cfg.Partition, cfg.Partition+1)
		}
		return nil, fmt.Errorf("verifier: bind to consumer %s: %w", VerifierConsumer(cfg.Partition), err)
	}
	return v, nil
}

// Stats returns running totals.
func (v *Verifier) Stats() VerifierStats {
	v.whyMu.Lock()
	defer v.whyMu.Unlock()
	return VerifierStats{Forwarded: v.forwarded.Load(), Quarantined: v.quarantined.Load(), QuarantineByWhy: maps.Clone(v.why)}
}

// Run verifies and forwards until ctx is done; it returns nil then.
func (v *Verifier) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var tallies sync.WaitGroup
	for _, t := range []*fare.Tally{v.rejects, v.fetchLog, v.natsLog, v.forwardLog} {
		tallies.Go(func() { t.Run(ctx, 10*time.Second) })
	}
	defer func() { cancel(); tallies.Wait() }()
	poll := time.NewTicker(v.cfg.RegistryPoll)
	defer poll.Stop()
	msgs := make([]jetstream.Msg, 0, v.cfg.FetchBatch)
	for ctx.Err() == nil {
		select {
		case <-poll.C:
			v.sync(ctx)
		default:
		}
		var err error
		msgs, err = fetchBatch(v.cons, v.cfg.FetchBatch, msgs[:0])
		if err != nil && ctx.Err() == nil {
			v.fetchLog.Add("fetch", err.Error())
			if len(msgs) == 0 {
				sleep(ctx, 250*time.Millisecond)
			}
		}
		// Those delivered before a failure too: dropped, they waited
		// their ack wait out before coming again.
		if len(msgs) > 0 && ctx.Err() == nil {
			v.handle(ctx, msgs)
		}
	}
	return nil
}

// sync reads the registry's new blocks.
func (v *Verifier) sync(ctx context.Context) {
	v.lastSync = time.Now()
	err := v.terminals.Sync(ctx)
	if err == nil || ctx.Err() != nil {
		v.syncFailures = 0
		return
	}
	v.syncFailures++
	v.log.Warn("terminal registry", "err", err, "failed_in_a_row", v.syncFailures)
	if v.cfg.Reopen == nil || v.syncFailures < 3 {
		return
	}
	led, err := v.cfg.Reopen(ctx)
	if err != nil {
		v.log.Warn("terminal registry: reopen the ledger", "err", err)
		return
	}
	terms := NewChainTerminals(led)
	if err := terms.Sync(ctx); err != nil {
		led.Close()
		v.log.Warn("terminal registry: read through the reopened ledger", "err", err)
		return
	}
	if v.reopened != nil {
		v.reopened.Close()
	}
	v.reopened, v.terminals, v.syncFailures = led, terms, 0
	v.log.Info("terminal registry: ledger reopened", "terminals", len(terms.All()))
}

// handle checks a fetched batch, forwards what verified and quarantines
// the junk, then acks each message whose copy JetStream acknowledged; the
// others are redelivered.
func (v *Verifier) handle(ctx context.Context, msgs []jetstream.Msg) {
	p := v.cfg.Partition
	subject := func(op, term string) string { return partitionedEventSubject(p, op, term) }
	synced := false
	lookup := func(id string) (RegisteredTerminal, bool) {
		t, ok := v.terminals.Lookup(id)
		if !ok && !synced && time.Since(v.lastSync) >= v.cfg.RegistryPoll/10 {
			synced = true // a terminal registered since the last read
			v.sync(ctx)
			t, ok = v.terminals.Lookup(id)
		}
		return t, ok
	}
	cands := checkEvents(msgs, subject, lookup, true, v.cfg.Workers)
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		cd := &cands[i]
		// The reply subject is parsed once: both the forward's id and
		// the send time come from it.
		md, _ := m.Metadata()
		sent := time.Now()
		if md != nil {
			sent = md.Timestamp
		}
		var out *nats.Msg
		if cd.reason == "" || cd.reject {
			// Signed by its terminal: clearing judges the rest (a revoked
			// terminal's event still uses up its sequence there).
			out = nats.NewMsg(VerifiedSubject(p, cd.ev.Operator, cd.ev.Terminal))
			out.Data = m.Data()
			out.Header.Set(nats.MsgIdHdr, forwardID(m.Data(), md))
			// When the terminal sent it: clearing counts replays by it,
			// not by when this forward was stored (a verifier catching
			// up forwards an outage's resend rounds all at once).
			out.Header.Set(sentHeader, sent.UTC().Format(time.RFC3339Nano))
		} else {
			out = quarantineMsg(VerifierQuarantineSubject(v.cfg.Partition), m, cd.reason, cd.detail, sent)
		}
		f, err := v.js.PublishMsgAsync(out, jetstream.WithStallWait(10*time.Second))
		if err != nil {
			v.forwardLog.Add("publish", err.Error())
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		ok, dup := false, false
		if f != nil {
			select {
			case ack := <-f.Ok():
				// A quarantine copy the stream already held (the message
				// came again after a lost acknowledgement) is not counted
				// twice; a forward is counted by each verifier that carried
				// it (one stopped before counting leaves it to the next).
				ok, dup = true, ack != nil && ack.Duplicate
			case err := <-f.Err():
				if !isFull(err) {
					v.forwardLog.Add("acknowledgement", err.Error())
				}
			case <-ctx.Done():
				return // not acked: delivered again
			}
		}
		if !ok {
			_ = msgs[i].NakWithDelay(250 * time.Millisecond)
			continue
		}
		if cd := &cands[i]; cd.reason == "" || cd.reject {
			v.forwarded.Add(1)
		} else if !dup {
			v.whyMu.Lock()
			v.why[cd.reason]++
			v.whyMu.Unlock()
			v.quarantined.Add(1)
			v.rejects.Add(cd.reason, cd.detail+" (subject "+msgs[i].Subject()+")")
		}
		_ = msgs[i].Ack()
	}
}

// forwardID is the message id of m's forward: the hash of its bytes and its
// sequence in the event stream. A redelivery of the same message (a
// verifier died before acking it) is dropped within the verified stream's
// window; a terminal's resend of the same bytes is a new message in the
// event stream and passes, as it must when the first forward was consumed
// but not applied (clearing killed before its commit, then acking later
// events past it).
//
// md is the message's metadata; nil where it has none.
func forwardID(data []byte, md *jetstream.MsgMetadata) string {
	sum := sha256.Sum256(data)
	id := "v-" + hex.EncodeToString(sum[:16])
	if md != nil {
		id += "-" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	return id
}

// isFull says a publish was refused because the verified stream is full
// (clearing behind): the event is delivered again later.
func isFull(err error) bool {
	return err != nil && strings.Contains(err.Error(), "maximum")
}

// Close disconnects from NATS and closes a ledger Reopen gave.
func (v *Verifier) Close() error {
	if v.nc != nil {
		v.nc.Close()
	}
	if v.reopened != nil {
		v.reopened.Close()
		v.reopened = nil
	}
	return nil
}
