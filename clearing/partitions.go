package clearing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

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
// faregate.verified.<operator>.<terminal> in the verified stream, which
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
// Only verifiers (and clearing) may publish verified events: their NATS
// users, whose public keys clearing is given, may fetch from the verify
// consumers, ack, forward and quarantine, and nothing else; a terminal
// publishing on a verified subject is refused by the server. `ledger
// audit` verifies every stored event's signature again from the store.
const (
	// VerifiedStream holds the events verifiers have verified.
	VerifiedStream = "FAREGATE_VERIFIED"
	// VerifiedSubjects is its subject filter.
	VerifiedSubjects = "faregate.verified.>"
	// verifierInboxPrefix is the inbox prefix of a verifier's connection.
	verifierInboxPrefix = "_VERIFIER_INBOX"
	// MaxVerifierPartitions bounds Config.VerifierPartitions.
	MaxVerifierPartitions = 64
)

// VerifiedSubject is where a verifier forwards an event of terminal
// (operator) whose signature verifies.
func VerifiedSubject(operator, terminal string) string {
	return "faregate.verified." + operator + "." + terminal
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
// to and subscribe to with n partitions: fetching from and acking the
// verify consumers, forwarding verified events, quarantining junk, and its
// own inbox; reading a consumer's info on the event stream (how a verifier
// learns its partition does not exist). No other stream or consumer, no
// confirmation, no bucket. (NATS wildcards match whole tokens, so each
// partition's consumer is listed.)
func VerifierPermissions(n int) (publish, subscribe []string) {
	publish = []string{"$JS.API.CONSUMER.INFO." + fare.EventStream + ".*", VerifiedSubjects, fare.QuarantineSubject}
	for p := range n {
		publish = append(publish,
			"$JS.API.CONSUMER.MSG.NEXT."+fare.EventStream+"."+VerifierConsumer(p),
			"$JS.ACK."+fare.EventStream+"."+VerifierConsumer(p)+".>")
	}
	return publish, []string{verifierInboxPrefix + ".>"}
}

// verifierUsers are the nats-server users of the verifiers' public NKeys
// for n partitions.
func verifierUsers(keys []string, n int) []*server.NkeyUser {
	pub, sub := VerifierPermissions(n)
	users := make([]*server.NkeyUser, 0, len(keys))
	for _, k := range keys {
		users = append(users, &server.NkeyUser{Nkey: k, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: sub},
		}})
	}
	return users
}

// ErrPartitionsChanged is returned when the event stream is partitioned
// differently from what clearing is asked for and still holds events:
// moving events between partitions is not something clearing does behind
// the operator's back.
var ErrPartitionsChanged = errors.New("clearing: the event stream's verifier partitions differ from --verifier-partitions")

// ensureEventStream makes the event stream, partitioned into
// VerifierPartitions, and the consumers that read it: clearing's own
// durable when it verifies itself, else one verify-<p> per partition and
// the verified stream clearing reads instead. It returns the consumer
// clearing reads (on the event stream or the verified stream).
func (c *Clearing) ensureEventStream(ctx context.Context) (jetstream.Consumer, error) {
	// The store must own the event consumer before it changes anything:
	// a second store on the same NATS is refused with everything as it was.
	if err := c.claimConsumer(ctx, EventConsumer); err != nil {
		return nil, err
	}
	n := c.cfg.VerifierPartitions
	events := c.eventStreamConfig(fare.EventStream, fare.EventSubjects)
	events.SubjectTransform = eventTransform(n)
	if st, err := c.js.Stream(ctx, fare.EventStream); err == nil {
		info := st.CachedInfo()
		if have := transformPartitions(info.Config.SubjectTransform); have != n {
			if have < 0 || info.Config.Metadata[streamOwnerKey] != streamOwnerValue || info.State.Msgs > 0 {
				return nil, fmt.Errorf("%w: %s is partitioned for %s and holds %d events; let clearing drain it with the partitioning it has, or remove the stream (terminals resend what was not confirmed)",
					ErrPartitionsChanged, fare.EventStream, describePartitions(have), info.State.Msgs)
			}
			c.log.Info("event stream repartitioned (it was empty)", "from", describePartitions(have), "to", describePartitions(n))
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s: %w", fare.EventStream, err)
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
		cons, err := c.js.CreateOrUpdateConsumer(ctx, fare.EventStream, mine)
		if err != nil {
			return nil, fmt.Errorf("create consumer: %w", err)
		}
		return cons, nil
	}
	for p := range n {
		if _, err := c.js.CreateOrUpdateConsumer(ctx, fare.EventStream, jetstream.ConsumerConfig{
			Durable:     VerifierConsumer(p),
			Description: fmt.Sprintf("faregate: verifier partition %d of %d", p, n),
			AckPolicy:   jetstream.AckExplicitPolicy, // several verifiers may share a partition
			// What a verifier that died had fetched goes to another after
			// this long; a batch is verified and forwarded in milliseconds.
			AckWait:       5 * time.Second,
			MaxAckPending: 64 * c.cfg.FetchBatch,
			FilterSubject: fmt.Sprintf("faregate.events.%d.>", p),
		}); err != nil {
			return nil, fmt.Errorf("create consumer %s: %w", VerifierConsumer(p), err)
		}
	}
	if _, err := c.ensureStream(ctx, c.eventStreamConfig(VerifiedStream, VerifiedSubjects)); err != nil {
		return nil, err
	}
	mine.FilterSubject = VerifiedSubjects
	cons, err := c.js.CreateOrUpdateConsumer(ctx, VerifiedStream, mine)
	if err != nil {
		return nil, fmt.Errorf("create consumer on %s: %w", VerifiedStream, err)
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
		if err != nil {
			v.Error = err.Error()
			continue
		}
		v.Pending, v.AckPending, v.Fetchers, v.Delivered = info.NumPending, info.NumAckPending, info.NumWaiting, info.Delivered.Stream
		if c.metrics != nil {
			c.metrics.partitionPending.WithLabelValues(strconv.Itoa(p)).Set(float64(v.Pending + uint64(v.AckPending)))
		}
	}
	return out
}
