package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
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
// feedInactive without a subscriber. Requests are served by feedWorkers,
// each terminal's by one of them (its requests in order), and each
// terminal may have at most maxQueuedPerTerminal waiting: a flooding
// terminal cannot fill the queue the others' requests wait in (an outside
// red team's one-second flood had a gate starting then miss its list for
// ten seconds and pass a denied card). A request that waited longer than
// a gate waits for its answer is dropped unserved. Every request counts
// against the terminal's budget (apiWatch), whether it is served or not:
// a flooding terminal is named, and the embedded server refuses it for a
// while.

const (
	// feedMinInterval is how soon a terminal may ask for a feed again.
	feedMinInterval = 500 * time.Millisecond
	// feedHeartbeat is how often an idle feed says it is alive.
	feedHeartbeat = 5 * time.Second
	// feedInactive is how long a feed's consumer outlives its subscriber.
	feedInactive = 30 * time.Second
	// feedWorkers serve requests side by side (each grant is two
	// JetStream API calls: a mass reconnect of 600 gates waited 11 s on
	// one worker, an outside test).
	feedWorkers = 4
	// feedQueue bounds the requests waiting for each worker; beyond it
	// they are dropped (the gate asks again).
	feedQueue = 1024
	// maxQueuedPerTerminal bounds one terminal's requests waiting: a gate
	// asks for three feeds at a time.
	maxQueuedPerTerminal = 4
	// feedStale is how long a request may wait: the gate gives up on its
	// answer after gatefeed's request timeout, a little longer.
	feedStale = 3 * time.Second
	// maxDeliverSubject bounds a delivery subject's length.
	maxDeliverSubject = 256
	// fcBudget is how many flow-control answers a terminal may send in
	// apiWindow: a gate reading a million values whole sends a few
	// hundred; a flood, millions a second.
	fcBudget = 5000
	// maxFeedRequest bounds a feed request's size (a delivery subject in
	// a few bytes of JSON).
	maxFeedRequest = 1024
)

// gateFeeds is what clearing keeps of the feeds it serves.
type gateFeeds struct {
	sub, fc  *nats.Subscription
	junk     *nats.Subscription // the quarantine, counted (countJunk)
	junkP    *nats.Subscription // the verifier partitions' quarantine subjects, counted
	requests [feedWorkers]chan feedRequest
	mu       sync.Mutex
	queued   map[string]int       // terminal -> requests waiting
	last     map[string]time.Time // terminal/feed -> last request served
	tally    *fare.Tally          // refused requests, summarised
	served   uint64               // consumers made (mu)
	resumed  uint64               // of them, resuming a terminal's copy (mu)
	refused  uint64               // requests refused (mu)
	// grants are each terminal feed's grants within regrantWindow, each
	// replacing the consumer the one before made (mu).
	grants   map[string][]time.Time
	warned   map[string]time.Time // terminal/feed -> when its grants were last said (mu)
	regrants uint64               // grants past regrantWarn in a window (mu)
	// deliver is where each terminal feed was last granted to deliver
	// (mu): a grant elsewhere sends fare.GateFeedMovedHeader there.
	deliver map[string]string
	// streams are the feeds' streams as clearing last read them, named
	// by their creation times (mu).
	streams map[string]streamRead
}

// A gate asks for a feed again when it starts, reconnects, misses its
// feed's heartbeats (three, 15 s) or finds its copy off the head.
// regrantWarn grants of one terminal's feed within regrantWindow are more
// than that: a gate restarting or reconnecting again and again, or another
// holder of its key taking the feed over, each grant moving the feed to
// the asker's inbox (an outside review kept a gate blind to the deny list
// that way). Said at most every regrantWarnEvery per feed. The gate that
// lost its feed to another's request is told at once
// (fare.GateFeedMovedHeader): this is the count over time.
const (
	regrantWindow    = 2 * time.Minute
	regrantWarn      = 6
	regrantWarnEvery = time.Minute
)

// feedRequest is a request waiting, with when it came.
type feedRequest struct {
	m    *nats.Msg
	term string
	at   time.Time
}

// openGateFeeds subscribes to the terminals' feed requests, which
// serveGateFeeds answers, and to their feeds' flow-control answers, which
// it counts.
func (c *Clearing) openGateFeeds() error {
	g := &gateFeeds{queued: map[string]int{}, last: map[string]time.Time{}, streams: map[string]streamRead{}, grants: map[string][]time.Time{}, warned: map[string]time.Time{}, deliver: map[string]string{}, tally: fare.NewTally(c.log, "gate feed requests refused")}
	for i := range g.requests {
		g.requests[i] = make(chan feedRequest, feedQueue)
	}
	sub, err := c.nc.Subscribe(fare.GateFeedSubjects, func(m *nats.Msg) {
		term, _, _ := strings.Cut(strings.TrimPrefix(m.Subject, "faregate.feed."), ".")
		if fare.ValidateID(term) != nil {
			g.note("malformed", fmt.Sprintf("a request on %.200q", m.Subject))
			return
		}
		// Every request counts, answered or not.
		if c.apiCalls.note("feed/"+term, time.Now()) {
			c.flagFlooder(term, "gate feed requests (a gate asks for three when it starts or reconnects)", apiBudget)
		}
		if len(m.Data) > maxFeedRequest {
			g.note("malformed", fmt.Sprintf("terminal %s: a request of %d bytes", term, len(m.Data)))
			return
		}
		// Answered only into the terminal's own inbox: clearing may
		// publish anywhere, and must not be made to publish where the
		// terminal may not. Checked before the request waits: such a
		// request takes no place in the queue.
		if !inTerminalInbox(term, m.Reply) {
			g.note("reply outside the inbox", fmt.Sprintf("a request on %q answering to %.300q: not answered", m.Subject, m.Reply))
			return
		}
		g.mu.Lock()
		if g.queued[term] >= maxQueuedPerTerminal {
			g.mu.Unlock()
			g.note("too many waiting", fmt.Sprintf("terminal %s: %d requests waiting already", term, maxQueuedPerTerminal))
			return
		}
		g.queued[term]++
		g.mu.Unlock()
		select {
		case g.requests[workerOf(term)] <- feedRequest{m: m, term: term, at: time.Now()}:
		default:
			g.done(term)
			g.note("queue full", "a feed request dropped: too many waiting (the gate asks again)")
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe gate feed requests: %w", err)
	}
	// Beyond these the client library drops, before the callback counts:
	// room for every terminal's requests at their largest.
	_ = sub.SetPendingLimits(feedWorkers*feedQueue, 64<<20)
	g.sub = sub
	// Flow-control answers name the consumer, which names the terminal
	// (its permissions allow only its own: fare.GateFeedFlowControl). The
	// server answers none of them here; clearing only counts.
	fc, err := c.nc.Subscribe("$JS.FC.>", func(m *nats.Msg) {
		if term := feedTerminalOf(m.Subject); term != "" && c.apiCalls.noteN("fc/"+term, time.Now(), 1, fcBudget) {
			c.flagFlooder(term, "flow-control answers (a gate sends one every few thousand values it reads)", fcBudget)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe gate feeds' flow control: %w", err)
	}
	_ = fc.SetPendingLimits(4096, 1<<20) // a flood is dropped here, having been counted enough
	g.fc = fc
	// Quarantined messages, clearing's and its verifiers' alike: junk
	// counted against the terminal that sent it (countJunk).
	junk, err := c.nc.Subscribe(fare.QuarantineSubject, c.countJunk)
	if err != nil {
		return fmt.Errorf("subscribe quarantine: %w", err)
	}
	_ = junk.SetPendingLimits(65536, 64<<20)
	g.junk = junk
	junkP, err := c.nc.Subscribe(fare.QuarantineSubject+".>", c.countJunk)
	if err != nil {
		return fmt.Errorf("subscribe the partitions' quarantine: %w", err)
	}
	_ = junkP.SetPendingLimits(65536, 64<<20)
	g.junkP = junkP
	c.feeds = g
	return nil
}

// feedTerminalOf is the terminal whose feed a flow-control subject
// ($JS.FC.<stream>.<consumer>.<id>) answers, or "" when it is no feed's.
func feedTerminalOf(subject string) string {
	tok := strings.Split(subject, ".")
	if len(tok) != 5 {
		return ""
	}
	for _, feed := range []string{fare.FeedDeny, fare.FeedEnrol, fare.FeedFace} {
		if term, ok := strings.CutPrefix(tok[3], fare.GateFeedConsumer("", feed)); ok && fare.ValidateID(term) == nil {
			return term
		}
	}
	return ""
}

// workerOf is the worker serving term's requests.
func workerOf(term string) int {
	h := fnv.New32a()
	h.Write([]byte(term))
	return int(h.Sum32() % feedWorkers)
}

// done notes one of term's requests no longer waiting.
func (g *gateFeeds) done(term string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.queued[term]--; g.queued[term] <= 0 {
		delete(g.queued, term)
	}
}

// note counts a refused request.
func (g *gateFeeds) note(reason, detail string) {
	g.mu.Lock()
	g.refused++
	g.mu.Unlock()
	g.tally.Add(reason, detail)
}

// serveGateFeeds answers feed requests with feedWorkers until ctx ends.
func (c *Clearing) serveGateFeeds(ctx context.Context) {
	g := c.feeds
	var wg sync.WaitGroup
	wg.Go(func() { g.tally.Run(ctx, 10*time.Second) })
	for i := range g.requests {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case r := <-g.requests[i]:
					if time.Since(r.at) > feedStale {
						g.note("stale", fmt.Sprintf("terminal %s: a request that waited %s, longer than the gate waits", r.term, time.Since(r.at).Round(time.Millisecond)))
					} else {
						c.serveGateFeed(ctx, r.m, r.at.Add(feedStale))
					}
					g.done(r.term)
				}
			}
		})
	}
	wg.Wait()
}

// serveGateFeed answers one request (see gateFeeds), giving up at
// deadline (the gate has stopped waiting by then).
func (c *Clearing) serveGateFeed(ctx context.Context, m *nats.Msg, deadline time.Time) {
	g := c.feeds
	term, feed, _ := strings.Cut(strings.TrimPrefix(m.Subject, "faregate.feed."), ".")
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
	stream, filter, req, err := parseFeedRequest(term, feed, m.Data)
	if err != nil {
		refuse("malformed", err.Error())
		return
	}
	now := time.Now()
	g.mu.Lock()
	key := term + "/" + feed
	early := now.Sub(g.last[key]) < feedMinInterval
	g.mu.Unlock()
	if early {
		refuse("too soon", fmt.Sprintf("asked again within %s", feedMinInterval))
		return
	}
	name := fare.GateFeedConsumer(term, feed)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var cons jetstream.PushConsumer
	var from feedStart
	// While the server reloads its accounts (a registration, a revocation,
	// a bar) it answers no JetStream API request for a moment: asked again
	// until the request would be stale (TestJetStreamAfterUsersReload).
	for try := 0; ; try++ {
		var err error
		if from, err = g.startOf(cctx, c.js, term, feed, stream, req.Resume); err == nil {
			cons, err = c.makeFeedConsumer(cctx, stream, name, filter, req.Deliver, from.seq)
		}
		if err == nil {
			break
		} else if !errors.Is(err, nats.ErrNoResponders) || cctx.Err() != nil {
			refuse("not made", err.Error())
			return
		}
		if sleep(cctx, time.Duration(try+1)*50*time.Millisecond); cctx.Err() != nil {
			refuse("not made", "the server answered no JetStream request while it reloaded")
			return
		}
	}
	g.mu.Lock()
	granted := time.Now()
	g.last[key] = granted // a grant: the next one of this feed not before feedMinInterval
	recent := append(slices.DeleteFunc(g.grants[key], func(at time.Time) bool { return granted.Sub(at) >= regrantWindow }), granted)
	g.grants[key] = recent
	warn := len(recent) >= regrantWarn && granted.Sub(g.warned[key]) >= regrantWarnEvery
	if len(recent) >= regrantWarn {
		g.regrants++
	}
	if warn {
		g.warned[key] = granted
	}
	moved := g.deliver[key]
	g.deliver[key] = req.Deliver
	g.mu.Unlock()
	if moved != "" && moved != req.Deliver {
		// Whoever still reads the previous delivery subject did not ask
		// for this grant (a gate stops reading before it asks again).
		notice := nats.NewMsg(moved)
		notice.Header.Set(fare.GateFeedMovedHeader, granted.UTC().Format(time.RFC3339Nano))
		_ = c.nc.PublishMsg(notice)
	}
	if warn {
		c.log.Warn("a terminal's feed granted again and again, each grant moving it to the asker's inbox: a gate restarting or reconnecting again and again, or another holder of its key taking the feed over, leaving the gate on an old copy (if the gate did not restart, revoke its key: faregate ledger revoke-terminal)",
			"terminal", term, "feed", feed, "grants", len(recent), "within", regrantWindow.String(), "deliver", req.Deliver)
	}
	info := cons.CachedInfo()
	grant := fare.GateFeedGrant{Consumer: name, Pending: info.NumPending, HeartbeatMs: feedHeartbeat.Milliseconds(), Stream: from.stream, Resumed: from.seq > 0, Head: from.head}
	b, _ := json.Marshal(grant)
	g.mu.Lock()
	g.served++
	if from.seq > 0 {
		g.resumed++
	}
	g.mu.Unlock()
	_ = m.Respond(b)
}

// streamRead is a feed's stream as read at at.
type streamRead struct {
	handle jetstream.Stream
	at     time.Time
}

// feedStreamFresh is how long a stream read names it for grants.
const feedStreamFresh = 10 * time.Second

// feedStart is where a granted feed starts: the stream's name for
// resuming (its creation time), the first sequence delivered (0: the
// values whole, the last of each key) and, resumed, the list's head.
type feedStart struct {
	stream string
	seq    uint64
	head   []byte
}

// startOf is where term's feed of stream starts for a request resuming
// from resume (nil: none). Resumed, after its revision, only when the
// request names this stream (made when clearing last read it) and the
// feed's head (a gate list's, or the terminal's own face head: the value
// clearing writes with every change, and the faces' every few seconds)
// stands at or past that revision; otherwise whole. The latest value of
// every key, or its purge marker, stands after the revision if it changed
// since, so the values after it are what changed; the grant carries the
// head, which the gate's copy must then make or be read whole (a face
// gallery's purge markers go after an hour: a gate away longer finds its
// copy does not make the head). A stream restored from a backup keeps its
// name and numbers new values with sequences the gate has passed: where it
// ends before the gate's position, a head written next (clearing numbering
// past the gate's list) would land where the gate never reads, so that is
// a whole read.
func (g *gateFeeds) startOf(ctx context.Context, js jetstream.JetStream, term, feed, stream string, resume *fare.GateFeedPosition) (feedStart, error) {
	g.mu.Lock()
	known, ok := g.streams[stream]
	g.mu.Unlock()
	st := known.handle
	if !ok || time.Since(known.at) > feedStreamFresh {
		// Read again now and then: a bucket deleted and made again while
		// clearing runs is a new stream, named anew.
		var err error
		if st, err = js.Stream(ctx, stream); err != nil {
			return feedStart{}, fmt.Errorf("stream %s: %w", stream, err)
		}
		g.mu.Lock()
		g.streams[stream] = streamRead{handle: st, at: time.Now()}
		g.mu.Unlock()
	}
	whole := feedStart{stream: st.CachedInfo().Created.UTC().Format(time.RFC3339Nano)}
	if resume == nil || !resume.Valid() || resume.Stream != whole.stream {
		return whole, nil
	}
	head := "$KV." + strings.TrimPrefix(stream, "KV_") + "." + fare.GateHeadKey
	if feed == fare.FeedFace {
		head = "$KV." + fare.FaceBucket + "." + fare.FaceHeadBucketKey(term) // the terminal's own head
	}
	m, err := st.GetLastMsgForSubject(ctx, head)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return whole, nil // no head: nothing to check a copy against
	case err != nil:
		return feedStart{}, fmt.Errorf("stream %s: the list's head: %w", stream, err)
	case resume.Revision > m.Sequence:
		return whole, nil
	}
	return feedStart{stream: whole.stream, seq: resume.Revision + 1, head: m.Data}, nil
}

// makeFeedConsumer replaces the terminal's consumer name on stream (a
// restart, a reconnect, a gap: one a feed) with one delivering filter's
// values to deliver: from sequence from, or (0) the values whole.
func (c *Clearing) makeFeedConsumer(ctx context.Context, stream, name, filter, deliver string, from uint64) (jetstream.PushConsumer, error) {
	if err := c.js.DeleteConsumer(ctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("previous consumer not deleted: %w", err)
	}
	policy := jetstream.DeliverLastPerSubjectPolicy
	if from > 0 {
		policy = jetstream.DeliverByStartSequencePolicy
	}
	cons, err := c.js.CreatePushConsumer(ctx, stream, jetstream.ConsumerConfig{
		Name:              name,
		DeliverSubject:    deliver,
		DeliverPolicy:     policy,
		OptStartSeq:       from,
		FilterSubject:     filter,
		AckPolicy:         jetstream.AckNonePolicy,
		FlowControl:       true,
		IdleHeartbeat:     feedHeartbeat,
		InactiveThreshold: feedInactive,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	return cons, nil
}

// inTerminalInbox says whether subject is a literal subject in term's
// inbox (fare.TerminalInboxPrefix), at most maxDeliverSubject long.
func inTerminalInbox(term, subject string) bool {
	rest, ok := strings.CutPrefix(subject, fare.TerminalInboxPrefix(term)+".")
	if !ok || rest == "" || len(subject) > maxDeliverSubject {
		return false
	}
	for tok := range strings.SplitSeq(rest, ".") {
		// NATS reads '*' and '>' as wildcards only as whole tokens, but a
		// delivery subject holding them anywhere is refused: terminals'
		// inboxes never do, and other clients' parsers are less careful.
		if tok == "" || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '*' || r == '>' }) {
			return false
		}
	}
	return true
}

// parseFeedRequest reads term's request for feed: the stream and filter
// the feed reads, and the request, whose delivery subject must be in
// term's inbox and whose resume position, if any, must name a stream and a
// revision.
func parseFeedRequest(term, feed string, data []byte) (stream, filter string, req fare.GateFeedRequest, err error) {
	stream, filter, ok := fare.GateFeedStream(term, feed)
	if !ok {
		return "", "", req, fmt.Errorf("no feed %q (%s, %s, %s)", feed, fare.FeedDeny, fare.FeedEnrol, fare.FeedFace)
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return "", "", req, fmt.Errorf("request: %w", err)
	}
	if !inTerminalInbox(term, req.Deliver) {
		return "", "", req, fmt.Errorf("delivery subject %.300q: not a literal subject in %s.> of at most %d bytes", req.Deliver, fare.TerminalInboxPrefix(term), maxDeliverSubject)
	}
	if r := req.Resume; r != nil {
		if _, err := time.Parse(time.RFC3339Nano, r.Stream); err != nil || r.Revision == 0 || r.Revision == math.MaxUint64 {
			return "", "", req, fmt.Errorf("resume: stream %.100q at revision %d: not a stream's creation time (RFC 3339) and a revision from 1 to 2^64-2", r.Stream, r.Revision)
		}
	}
	return stream, filter, req, nil
}

// GateFeedRegrants counts grants that made regrantWarn or more of one
// terminal's feed within regrantWindow.
func (c *Clearing) GateFeedRegrants() uint64 {
	if c.feeds == nil {
		return 0
	}
	c.feeds.mu.Lock()
	defer c.feeds.mu.Unlock()
	return c.feeds.regrants
}

// GateFeedCounts are how many feed consumers clearing has made for
// terminals (resumed: of them, those resuming a terminal's copy rather
// than delivering the values whole) and how many requests it refused.
func (c *Clearing) GateFeedCounts() (served, resumed, refused uint64) {
	if c.feeds == nil {
		return 0, 0, 0
	}
	c.feeds.mu.Lock()
	defer c.feeds.mu.Unlock()
	return c.feeds.served, c.feeds.resumed, c.feeds.refused
}
