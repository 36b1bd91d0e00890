package clearing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/faregate/faregate/fare"
)

// Partitioned verification (issue 13): signature verification, the largest
// part of clearing's CPU per event, runs in separate verifier processes,
// one or more per partition of the terminals, while one clearing process
// keeps what needs every tap of a terminal and of a rider in one place
// (dedup, watermarks and confirmations; journeys, caps and the journal;
// sealing and anchoring).
//
// The partitions are NATS's own: the event stream's subject transform
// rewrites faregate.events.<operator>.<terminal> to
// faregate.events.<p>.<operator>.<terminal>, p = partition(P) of the two
// tokens (a deterministic hash), so terminals publish exactly as before and
// all of one terminal's events land in one partition, in order. Each
// partition has one durable pull consumer (verify-<p>, explicit acks, made
// by clearing); any number of verifier processes may share it, so one
// that dies is replaced by starting another or by its twin. A verifier
// forwards each event whose signature verifies, its bytes untouched, to
// faregate.verified.<p>.<operator>.<terminal> in the verified stream, which
// clearing consumes; junk (malformed, a subject that is not the signer's,
// an unknown terminal, a bad signature) goes to the quarantine stream. A
// source message is acked only once its forward (or quarantine) is acked.
//
// Nothing is lost or applied twice across a verifier's death: what it had
// not acked is delivered again and forwarded again; the forward's message
// id is the hash of the event's bytes (JetStream drops a repeat within its
// window) and clearing's own dedup by (terminal, sequence) is permanent.
// The terminal keeps every event in its outbox until clearing's signed
// confirmation, which still comes only after clearing's synced commit.
//
// Only verifiers (and clearing) may publish verified events, and each
// verifier only its own partitions': its NATS user, whose public key
// clearing is given with the partitions it may work on (VerifierKey), may
// fetch from and ack those partitions' verify consumers, forward to those
// partitions' verified subjects and quarantine, and nothing else. Clearing
// applies a verified event only from the subject of the partition NATS's
// hash puts its terminal in (PartitionOf), so a verifier that is broken
// into can forge events of its own partition's terminals at most, never
// another's; a terminal publishing on a verified subject is refused by the
// server. `ledger audit` verifies every stored event's signature again
// from the store.
const (
	// VerifiedStream holds the events verifiers have verified.
	VerifiedStream = "FAREGATE_VERIFIED"
	// VerifiedSubjects is its subject filter.
	VerifiedSubjects = "faregate.verified.>"
	// verifierInboxPrefix begins the inbox prefix of a verifier's
	// connection (VerifierInbox).
	verifierInboxPrefix = "_VERIFIER_INBOX"
	// MaxVerifierPartitions bounds Config.VerifierPartitions.
	MaxVerifierPartitions = 64
)

// VerifiedSubject is where the verifier of partition p forwards an event of
// terminal (operator) whose signature verifies.
func VerifiedSubject(p int, operator, terminal string) string {
	return "faregate.verified." + strconv.Itoa(p) + "." + operator + "." + terminal
}

// PartitionOf is the verifier partition, of n, that the event stream's
// subject transform {{partition(n,1,2)}} puts terminal (operator) in:
// FNV-1a (32 bits) of the two tokens concatenated, modulo n, as
// nats-server's getHashPartition computes it.
func PartitionOf(operator, terminal string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(operator))
	h.Write([]byte(terminal))
	return int(h.Sum32() % uint32(n))
}

// VerifierKey admits one verifier's NATS user (its public NKey, "U…") to
// one partition. A user may be admitted to several partitions, by one
// VerifierKey each, and a partition may have several users (twins that
// share its consumer).
type VerifierKey struct {
	Partition int
	Key       string
}

// String writes k as ParseVerifierKey reads it: "P=U…".
func (k VerifierKey) String() string { return strconv.Itoa(k.Partition) + "=" + k.Key }

// ParseVerifierKey reads "P=U…": a partition number and a verifier's
// public NKey, as `--verifier-key` takes them.
func ParseVerifierKey(s string) (VerifierKey, error) {
	ps, key, ok := strings.Cut(s, "=")
	if !ok {
		return VerifierKey{}, fmt.Errorf("verifier key %q names no partition: want P=U..., the partition the verifier works on and its public NKey (faregate clearing verifier-key prints the key)", redactSeed(s))
	}
	if r := redactSeed(s); r != s {
		// Said once, and never beside a part of it (the partition, the key).
		return VerifierKey{}, fmt.Errorf("verifier key: %s", r)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p >= MaxVerifierPartitions {
		return VerifierKey{}, fmt.Errorf("verifier key %q: partition %q is not a number from 0 to %d", s, ps, MaxVerifierPartitions-1)
	}
	if !nkeys.IsValidPublicUserKey(key) {
		return VerifierKey{}, fmt.Errorf("verifier key %q: %q is not a NATS user public key (U..., as faregate clearing verifier-key prints)", s, key)
	}
	return VerifierKey{Partition: p, Key: key}, nil
}

// checkVerifierKeys checks that every key is a user key admitted to one of
// n partitions.
func checkVerifierKeys(keys []VerifierKey, n int) error {
	if len(keys) > 0 && n == 0 {
		return errors.New("verifier keys given without verifier partitions")
	}
	for _, k := range keys {
		if !nkeys.IsValidPublicUserKey(k.Key) {
			return fmt.Errorf("verifier key %q is not a NATS user public key (U..., as faregate clearing verifier-key prints)", k.Key)
		}
		if k.Partition < 0 || k.Partition >= n {
			return fmt.Errorf("verifier key %s: partition %d, but there are %d partitions (0 to %d)", k, k.Partition, n, n-1)
		}
	}
	return nil
}

// VerifierConsumer is the durable consumer of verifier partition p.
func VerifierConsumer(p int) string { return "verify-" + strconv.Itoa(p) }

// partitionedEventSubject is the subject the event stream stores an event
// of terminal (operator) under in partition p.
func partitionedEventSubject(p int, operator, terminal string) string {
	return "faregate.events." + strconv.Itoa(p) + "." + operator + "." + terminal
}

// eventTransform is the event stream's subject transform for n verifier
// partitions (nil for none).
func eventTransform(n int) *jetstream.SubjectTransformConfig {
	if n <= 0 {
		return nil
	}
	return &jetstream.SubjectTransformConfig{
		Source:      "faregate.events.*.*",
		Destination: fmt.Sprintf("faregate.events.{{partition(%d,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}", n),
	}
}

// transformPartitions reads the partition count back from a stream's
// subject transform (0: not partitioned, -1: a transform clearing did not
// write).
func transformPartitions(t *jetstream.SubjectTransformConfig) int {
	if t == nil || (t.Source == "" && t.Destination == "") {
		return 0
	}
	for n := 1; n <= MaxVerifierPartitions; n++ {
		if w := eventTransform(n); w.Source == t.Source && w.Destination == t.Destination {
			return n
		}
	}
	return -1
}

// VerifierPermissions are the subjects a verifier's NATS user may publish
// to and subscribe to when admitted to partitions: reading the info of,
// fetching from and acking those partitions' verify consumers, forwarding
// verified events of those partitions, quarantining junk, and its own
// inbox. No other partition, stream or consumer, no confirmation, no
// bucket. (NATS wildcards match whole tokens, so each partition is
// listed.)
func VerifierPermissions(key string, partitions []int) (publish, subscribe []string) {
	for _, p := range partitions {
		for _, sv := range verifierServices(p) {
			publish = append(publish, cmp.Or(sv.local, sv.subject))
		}
	}
	return publish, []string{VerifierInbox(key) + ".>"}
}

// VerifierInbox is the inbox prefix of the verifier whose NATS user is key:
// its own, so that no verifier can read what another fetches (a pull
// consumer delivers into the fetcher's inbox: raw card tokens of another
// partition's terminals).
func VerifierInbox(key string) string { return verifierInboxPrefix + "." + key }

// verifierUsers are the nats-server users of the verifiers' public NKeys,
// one a key, each with the permissions of the partitions it is admitted to.
func verifierUsers(keys []VerifierKey) []*server.NkeyUser {
	var users []*server.NkeyUser
	for i, k := range keys {
		if slices.ContainsFunc(keys[:i], func(o VerifierKey) bool { return o.Key == k.Key }) {
			continue // one user a key, with all its partitions
		}
		pub, sub := VerifierPermissions(k.Key, verifierPartitionsOf(keys, k.Key))
		users = append(users, &server.NkeyUser{Nkey: k.Key, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: sub},
		}})
	}
	return users
}

// verifierPartitionsOf returns the partitions key is admitted to.
func verifierPartitionsOf(keys []VerifierKey, key string) []int {
	var ps []int
	for _, k := range keys {
		if k.Key == key && !slices.Contains(ps, k.Partition) {
			ps = append(ps, k.Partition)
		}
	}
	slices.Sort(ps)
	return ps
}

// ErrPartitionsChanged is returned when the event stream is partitioned
// differently from what clearing is asked for and still holds events:
// moving events between partitions is not something clearing does behind
// the operator's back.
var ErrPartitionsChanged = errors.New("clearing: the event stream's verifier partitions differ from --verifier-partitions")

// streamMsgs is how many messages stream holds (0 for a stream that does
// not exist).
func (c *Clearing) streamMsgs(ctx context.Context, stream string) (uint64, error) {
	st, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.Stream, error) { return c.js.Stream(ctx, stream) })
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w%s", stream, err, clusterHint(err))
	}
	return st.CachedInfo().State.Msgs, nil
}

// eventStreamWanted is the event stream clearing makes: partitioned into
// VerifierPartitions, with no publish acks (see ensureEventStream).
func (c *Clearing) eventStreamWanted() jetstream.StreamConfig {
	events := c.eventStreamConfig(fare.EventStream, fare.EventSubjects)
	events.SubjectTransform = eventTransform(c.cfg.VerifierPartitions)
	events.NoAck = true
	return events
}

// operatorStreamMismatch is ErrStreamMismatch naming everything an
// operator's event stream, configured as have, lacks of want, or nil.
func (c *Clearing) operatorStreamMismatch(have, want jetstream.StreamConfig) error {
	diffs := checkStream(have, want)
	if p, n := transformPartitions(have.SubjectTransform), c.cfg.VerifierPartitions; p != n {
		diffs = append(diffs, fmt.Sprintf("partitioned for %s, clearing runs %s", describePartitions(p), describePartitions(n)))
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %s (fix or remove the stream; clearing will not rewrite it)", ErrStreamMismatch, want.Name, strings.Join(diffs, "; "))
}

// checkOperatorEventStream refuses an operator's event stream clearing
// cannot use before clearing makes its other streams (an outside review
// found the quarantine stream made by a start then refused). An absent
// stream, or clearing's own, passes: ensureEventStream makes it right.
func (c *Clearing) checkOperatorEventStream(ctx context.Context) error {
	st, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.Stream, error) { return c.js.Stream(ctx, fare.EventStream) })
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w%s", fare.EventStream, err, clusterHint(err))
	}
	if have := st.CachedInfo().Config; have.Metadata[streamOwnerKey] != streamOwnerValue {
		return c.operatorStreamMismatch(have, c.eventStreamWanted())
	}
	return nil
}

// ensureEventStream makes the event stream, partitioned into
// VerifierPartitions, and the consumers that read it: clearing's own
// durable when it verifies itself, else one verify-<p> per partition and
// the verified stream clearing reads instead. It returns the consumer
// clearing reads (on the event stream or the verified stream).
func (c *Clearing) ensureEventStream(ctx context.Context) (jetstream.Consumer, error) {
	// Open claimed the event consumer for this store before anything here.
	n := c.cfg.VerifierPartitions
	// No publish acks: a terminal may name any subject as its publish's
	// reply, and the server would store each ack (or refusal) it sends
	// there, one per publish, on another terminal's subject, filling that
	// terminal's share of the stream. Terminals need no ack: an event
	// stays in the outbox until clearing's signed confirmation.
	events := c.eventStreamWanted()
	// Read (and below, consumers made) through retryPlacement: a node
	// restarting or a replica moving as clearing starts leaves a request
	// unanswered for a while, and clearing exited on the first timeout.
	if st, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.Stream, error) { return c.js.Stream(ctx, fare.EventStream) }); err == nil {
		info := st.CachedInfo()
		if have := transformPartitions(info.Config.SubjectTransform); have != n {
			if info.Config.Metadata[streamOwnerKey] != streamOwnerValue {
				// An operator's stream: name everything it lacks, not only
				// the partitioning.
				return nil, c.operatorStreamMismatch(info.Config, events)
			}
			if have < 0 || info.State.Msgs > 0 {
				return nil, fmt.Errorf("%w: %s is partitioned for %s and holds %d events; let clearing drain it with the partitioning it has, or remove the stream (terminals resend what was not confirmed)",
					ErrPartitionsChanged, fare.EventStream, describePartitions(have), info.State.Msgs)
			}
			// Events the verifiers verified and clearing has not applied
			// yet: after the change nothing would read them (no
			// partitions), or each would be quarantined as coming from
			// the wrong partition (another count). The normal state of a
			// clearing stopped behind its verifiers (an outside review).
			if have > 0 {
				if held, err := c.streamMsgs(ctx, VerifiedStream); err != nil {
					return nil, err
				} else if held > 0 {
					return nil, fmt.Errorf("%w: %s holds %d verified event(s) clearing has not applied yet (partitioned for %s); start clearing with the partitioning it has until it has applied them (nats stream info %s shows none left), then change it",
						ErrPartitionsChanged, VerifiedStream, held, describePartitions(have), VerifiedStream)
				}
			}
			c.log.Info("event stream repartitioned (it was empty)", "from", describePartitions(have), "to", describePartitions(n))
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s: %w%s", fare.EventStream, err, clusterHint(err))
	}
	st, err := c.ensureStream(ctx, events)
	if err != nil {
		return nil, err
	}
	// Consumers of the other layout would hold events forever (interest
	// retention keeps a message until every consumer whose filter matches
	// acks it): remove them.
	stale := func(name string) bool {
		if n == 0 {
			return strings.HasPrefix(name, "verify-")
		}
		if name == EventConsumer {
			return true
		}
		p, err := strconv.Atoi(strings.TrimPrefix(name, "verify-"))
		return strings.HasPrefix(name, "verify-") && (err != nil || p >= n)
	}
	names := st.ConsumerNames(ctx)
	var drop []string
	for name := range names.Name() {
		if stale(name) {
			drop = append(drop, name)
		}
	}
	if err := names.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, fmt.Errorf("list consumers of %s: %w", fare.EventStream, err)
	}
	for _, name := range drop {
		if err := c.js.DeleteConsumer(ctx, fare.EventStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("remove consumer %s of the other partitioning: %w", name, err)
		}
		c.log.Info("removed a consumer of the other partitioning", "stream", fare.EventStream, "consumer", name)
	}
	mine := jetstream.ConsumerConfig{
		Durable:       EventConsumer,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 64 * c.cfg.FetchBatch,
	}
	if n == 0 {
		mine.FilterSubject = fare.EventSubjects
		cons, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
			return c.js.CreateOrUpdateConsumer(ctx, fare.EventStream, mine)
		})
		if err != nil {
			return nil, fmt.Errorf("create consumer %s on %s: %w%s", EventConsumer, fare.EventStream, err, clusterHint(err))
		}
		return cons, nil
	}
	for p := range n {
		vc := jetstream.ConsumerConfig{
			Durable:     VerifierConsumer(p),
			Description: fmt.Sprintf("faregate: verifier partition %d of %d", p, n),
			AckPolicy:   jetstream.AckExplicitPolicy, // several verifiers may share a partition
			// What a verifier that died had fetched goes to another after
			// this long; a batch is verified and forwarded in milliseconds.
			AckWait:       5 * time.Second,
			MaxAckPending: 64 * c.cfg.FetchBatch,
			FilterSubject: fmt.Sprintf("faregate.events.%d.>", p),
		}
		if _, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
			return c.js.CreateOrUpdateConsumer(ctx, fare.EventStream, vc)
		}); err != nil {
			return nil, fmt.Errorf("create consumer %s: %w%s", VerifierConsumer(p), err, clusterHint(err))
		}
	}
	if _, err := c.ensureStream(ctx, c.eventStreamConfig(VerifiedStream, VerifiedSubjects)); err != nil {
		return nil, err
	}
	mine.FilterSubject = VerifiedSubjects
	cons, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return c.js.CreateOrUpdateConsumer(ctx, VerifiedStream, mine)
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer on %s: %w%s", VerifiedStream, err, clusterHint(err))
	}
	return cons, nil
}

// eventStreamConfig is the configuration of a stream of signed events (the
// event stream, the verified stream) under subjects.
func (c *Clearing) eventStreamConfig(name, subjects string) jetstream.StreamConfig {
	lim := c.cfg.Limits
	return jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subjects},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.InterestPolicy, // dropped once acked; AckAll needs non-workqueue
		Duplicates: c.cfg.DedupWindow,
		MaxMsgSize: fare.MaxEncodedSize * 4,
		MaxBytes:   lim.EventMaxBytes,
		MaxAge:     lim.EventMaxAge,
		// Full means refuse, never drop: the terminal keeps the event and
		// resends. Per subject, so one terminal cannot fill it for all.
		MaxMsgsPerSubject:    lim.EventMaxPerTerminal,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
	}
}

func describePartitions(n int) string {
	switch {
	case n < 0:
		return "a subject transform clearing did not write"
	case n == 0:
		return "no verifier partitions"
	default:
		return fmt.Sprintf("%d verifier partitions", n)
	}
}

// PartitionView is one verifier partition as its consumer stands: events
// not yet delivered to a verifier, delivered but not acked, and the fetch
// requests waiting (0 with events pending: no verifier is working on it).
type PartitionView struct {
	Partition  int    `json:"partition"`
	Consumer   string `json:"consumer"`
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	Fetchers   int    `json:"fetchers_waiting"`
	Delivered  uint64 `json:"delivered"`
	// Error is set when the consumer could not be read.
	Error string `json:"error,omitempty"`
}

// VerifierPartitions reads each verifier partition's consumer (nil without
// partitions).
func (c *Clearing) VerifierPartitions(ctx context.Context) []PartitionView {
	n := c.cfg.VerifierPartitions
	if n == 0 || c.js == nil {
		return nil
	}
	out := make([]PartitionView, n)
	for p := range n {
		v := &out[p]
		v.Partition, v.Consumer = p, VerifierConsumer(p)
		cons, err := c.js.Consumer(ctx, fare.EventStream, v.Consumer)
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = cons.Info(ctx)
		}
		gone := errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
		c.noteGone(p, gone, err)
		if err != nil {
			v.Error = err.Error()
			continue
		}
		v.Pending, v.AckPending, v.Fetchers, v.Delivered = info.NumPending, info.NumAckPending, info.NumWaiting, info.Delivered.Stream
		// Events waiting and nobody fetching: stalled unless a verifier
		// holding some is still acking them (its ack floor moves). One
		// that stopped or hangs holding a message (a pull cut short) looks
		// like a verifier at work but acks nothing.
		c.noteStall(p, v.Pending > 0 && v.Fetchers == 0, info.AckFloor.Stream)
		if c.metrics != nil {
			c.metrics.partitionPending.WithLabelValues(strconv.Itoa(p)).Set(float64(v.Pending + uint64(v.AckPending)))
		}
	}
	return out
}

// partitionStallGrace is how long a verifier partition may have events
// waiting with no verifier fetching or holding any before Ready says so: a
// verifier between two fetches looks the same for a moment.
const partitionStallGrace = 5 * time.Second

// noteStall records whether partition p has events waiting and no
// verifier fetching them (waiting), and its ack floor: a partition whose
// floor has not moved since it began waiting so is stalled.
func (c *Clearing) noteStall(p int, waiting bool, floor uint64) {
	c.stallMu.Lock()
	defer c.stallMu.Unlock()
	if c.stalledSince == nil {
		c.stalledSince, c.stallFloor = make(map[int]time.Time), make(map[int]uint64)
	}
	last, seen := c.stallFloor[p]
	c.stallFloor[p] = floor
	if !waiting || (seen && floor != last) {
		delete(c.stalledSince, p) // fetching, or acking what it holds
		return
	}
	if _, ok := c.stalledSince[p]; !ok {
		c.stalledSince[p] = time.Now()
	}
}

// noteGone records whether partition p's verify consumer (or the event
// stream) was found missing, and the error that said so: no verifier can
// fetch from it, and a verifier that started would be refused. Only
// clearing makes it (at start): an outside review's deletion went unsaid
// by readiness while the partition's taps piled up.
func (c *Clearing) noteGone(p int, gone bool, err error) {
	c.stallMu.Lock()
	defer c.stallMu.Unlock()
	if !gone {
		delete(c.partitionGone, p)
		return
	}
	if c.partitionGone == nil {
		c.partitionGone = make(map[int]string)
	}
	c.partitionGone[p] = err.Error()
}

// stalledPartitions says, for Ready, each partition that has had events
// waiting and no verifier for longer than partitionStallGrace, and each
// whose consumer is gone.
func (c *Clearing) stalledPartitions() []string {
	c.stallMu.Lock()
	defer c.stallMu.Unlock()
	var out []string
	for _, p := range slices.Sorted(maps.Keys(c.partitionGone)) {
		out = append(out, fmt.Sprintf("verifier partition %d: its consumer %s cannot be found (%s): no verifier can fetch its events; restart clearing, which makes it again", p, VerifierConsumer(p), c.partitionGone[p]))
	}
	for p, since := range c.stalledSince {
		if d := time.Since(since); d >= partitionStallGrace {
			out = append(out, fmt.Sprintf("verifier partition %d: events waiting and no verifier fetching them for %s (start faregate clearing verifier --partition %d)", p, d.Round(time.Second), p))
		}
	}
	return out
}

// redactSeed is s for an error message, unless it holds what looks like an
// NKey seed (S...: a verifier's seed file pasted where its public key
// goes), which no log or terminal may show.
func redactSeed(s string) string {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '=' || r == ' ' }) {
		if len(f) > 1 && f[0] == 'S' && f[1] >= 'A' && f[1] <= 'Z' && len(f) >= 50 {
			return "(a seed, not shown: give the public key, U..., that faregate clearing verifier-key prints)"
		}
	}
	return s
}
