package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// Gate feeds (fare.GateFeedSubject): clearing makes, for each terminal
// that asks, the push consumers its gate-list and face watches read, so
// that terminals reach no JetStream API. A request is answered only into
// the asking terminal's inbox, and makes a consumer only when:
//   - the terminal is registered and not revoked (NATS lets only its own
//     user publish on its feed subject);
//   - it delivers into that terminal's inbox, on a literal subject;
//   - the feed is one there is (the face feed: when clearing keeps faces),
//     filtered to what the terminal may read (fare.GateFeedStream);
//   - the terminal has not asked for the same feed within feedMinInterval.
//
// Each terminal holds at most one consumer a feed (its name is the
// terminal's and the feed's: a new request replaces it), ephemeral, in
// memory, unacknowledged, with flow control and heartbeats, gone after
// feedInactive without a subscriber. Requests beyond a gate's need are
// counted as the JetStream API requests were (apiWatch): a flooding
// terminal is named, and the embedded server refuses it for a while.

const (
	// feedMinInterval is how soon a terminal may ask for a feed again.
	feedMinInterval = 500 * time.Millisecond
	// feedHeartbeat is how often an idle feed says it is alive.
	feedHeartbeat = 5 * time.Second
	// feedInactive is how long a feed's consumer outlives its subscriber.
	feedInactive = 30 * time.Second
	// feedQueue bounds the requests waiting to be served; beyond it they
	// are dropped (a flood: the terminal asks again).
	feedQueue = 1024
	// maxDeliverSubject bounds a delivery subject's length.
	maxDeliverSubject = 256
)

// feedConsumer is the name of terminal's consumer of feed.
func feedConsumer(terminal, feed string) string { return "gatefeed_" + feed + "_" + terminal }

// gateFeeds is what clearing keeps of the feeds it serves.
type gateFeeds struct {
	sub      *nats.Subscription
	requests chan *nats.Msg
	mu       sync.Mutex
	last     map[string]time.Time // terminal/feed -> last request served
	tally    *fare.Tally          // refused requests, summarised
	served   uint64               // consumers made (mu)
	refused  uint64               // requests refused (mu)
}

// openGateFeeds subscribes to the terminals' feed requests; serveGateFeeds
// answers them.
func (c *Clearing) openGateFeeds() error {
	g := &gateFeeds{requests: make(chan *nats.Msg, feedQueue), last: map[string]time.Time{},
		tally: fare.NewTally(c.log, "gate feed requests refused")}
	sub, err := c.nc.Subscribe(fare.GateFeedSubjects, func(m *nats.Msg) {
		select {
		case g.requests <- m:
		default:
			g.note("queue full", "a feed request dropped: too many waiting (a terminal flooding?)")
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe gate feed requests: %w", err)
	}
	// A flood is dropped by the client library beyond these, not queued.
	_ = sub.SetPendingLimits(feedQueue, 1<<20)
	g.sub = sub
	c.feeds = g
	return nil
}

// note counts a refused request.
func (g *gateFeeds) note(reason, detail string) {
	g.mu.Lock()
	g.refused++
	g.mu.Unlock()
	g.tally.Add(reason, detail)
}

// serveGateFeeds answers feed requests until ctx ends.
func (c *Clearing) serveGateFeeds(ctx context.Context) {
	g := c.feeds
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	go g.tally.Run(tctx, 10*time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-g.requests:
			c.serveGateFeed(ctx, m)
		}
	}
}

// serveGateFeed answers one request (see gateFeeds).
func (c *Clearing) serveGateFeed(ctx context.Context, m *nats.Msg) {
	g := c.feeds
	term, feed, _ := strings.Cut(strings.TrimPrefix(m.Subject, "faregate.feed."), ".")
	if fare.ValidateID(term) != nil {
		g.note("malformed", fmt.Sprintf("a request on %q", m.Subject))
		return
	}
	// Every request counts, answered or not.
	if c.apiCalls.note("feed/"+term, time.Now()) {
		c.flagFlooder(term, "gate feed requests (a gate asks for three when it starts or reconnects)", apiBudget)
	}
	// Answered only into the terminal's own inbox: clearing may publish
	// anywhere, and must not be made to publish where the terminal may not.
	if !inTerminalInbox(term, m.Reply) {
		g.note("reply outside the inbox", fmt.Sprintf("a request on %q answering to %q: not answered", m.Subject, m.Reply))
		return
	}
	refuse := func(reason, detail string) {
		g.note(reason, fmt.Sprintf("terminal %s, feed %q: %s", term, feed, detail))
		b, _ := json.Marshal(fare.GateFeedGrant{Error: detail})
		_ = m.Respond(b)
	}
	t, ok := c.terminals.Lookup(term)
	if !ok || t.Revoked() {
		refuse("unknown terminal", "no registered, unrevoked terminal of that id")
		return
	}
	if feed == fare.FeedFace && c.faces == nil {
		refuse("no such feed", "clearing keeps no faces")
		return
	}
	stream, filter, deliver, err := parseFeedRequest(term, feed, m.Data)
	if err != nil {
		refuse("malformed", err.Error())
		return
	}
	now := time.Now()
	g.mu.Lock()
	key := term + "/" + feed
	early := now.Sub(g.last[key]) < feedMinInterval
	if !early {
		g.last[key] = now
	}
	g.mu.Unlock()
	if early {
		refuse("too soon", fmt.Sprintf("asked again within %s", feedMinInterval))
		return
	}
	name := feedConsumer(term, feed)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The terminal's previous consumer of this feed (a restart, a
	// reconnect, a gap) goes first: one a feed.
	if err := c.js.DeleteConsumer(cctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		refuse("not made", fmt.Sprintf("previous consumer not deleted: %v", err))
		return
	}
	cons, err := c.js.CreatePushConsumer(cctx, stream, jetstream.ConsumerConfig{
		Name:              name,
		DeliverSubject:    deliver,
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		FilterSubject:     filter,
		AckPolicy:         jetstream.AckNonePolicy,
		FlowControl:       true,
		IdleHeartbeat:     feedHeartbeat,
		InactiveThreshold: feedInactive,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		refuse("not made", fmt.Sprintf("consumer: %v", err))
		return
	}
	info := cons.CachedInfo()
	b, _ := json.Marshal(fare.GateFeedGrant{Consumer: name, Pending: info.NumPending, HeartbeatMs: feedHeartbeat.Milliseconds()})
	g.mu.Lock()
	g.served++
	g.mu.Unlock()
	_ = m.Respond(b)
}

// inTerminalInbox says whether subject is a literal subject in term's
// inbox (fare.TerminalInboxPrefix), at most maxDeliverSubject long.
func inTerminalInbox(term, subject string) bool {
	rest, ok := strings.CutPrefix(subject, fare.TerminalInboxPrefix(term)+".")
	if !ok || rest == "" || len(subject) > maxDeliverSubject {
		return false
	}
	for tok := range strings.SplitSeq(rest, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return false
		}
	}
	return true
}

// parseFeedRequest reads term's request for feed: the stream and filter
// the feed reads, and the delivery subject, which must be in term's inbox.
func parseFeedRequest(term, feed string, data []byte) (stream, filter, deliver string, err error) {
	stream, filter, ok := fare.GateFeedStream(term, feed)
	if !ok {
		return "", "", "", fmt.Errorf("no feed %q (%s, %s, %s)", feed, fare.FeedDeny, fare.FeedEnrol, fare.FeedFace)
	}
	var req fare.GateFeedRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return "", "", "", fmt.Errorf("request: %w", err)
	}
	if !inTerminalInbox(term, req.Deliver) {
		return "", "", "", fmt.Errorf("delivery subject %.300q: not a literal subject in %s.> of at most %d bytes", req.Deliver, fare.TerminalInboxPrefix(term), maxDeliverSubject)
	}
	return stream, filter, req.Deliver, nil
}

// GateFeedCounts are how many feed consumers clearing has made for
// terminals and how many requests it refused.
func (c *Clearing) GateFeedCounts() (served, refused uint64) {
	if c.feeds == nil {
		return 0, 0
	}
	c.feeds.mu.Lock()
	defer c.feeds.mu.Unlock()
	return c.feeds.served, c.feeds.refused
}
