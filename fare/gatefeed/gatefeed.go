// Package gatefeed is a terminal's side of a gate feed (fare.GateFeedSubject):
// it asks clearing for a consumer delivering into the terminal's inbox,
// reads the bucket's values whole and then follows them, and says when the
// feed cannot go on (a gap, a silent consumer, the subscription gone), so
// that its caller starts a fresh one. It does what nats.go's ordered
// consumer does, without the JetStream API a terminal has no access to.
package gatefeed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/fare"
)

// Entry is one value of a feed's bucket.
type Entry struct {
	// Key is the bucket key (the subject after $KV.<bucket>.).
	Key string
	// Value is the value as stored.
	Value []byte
	// Op is "" for a put, or the KV-Operation header's DEL or PURGE.
	Op string
	// Revision is the value's stream sequence.
	Revision uint64
}

// Errors that end a feed.
var (
	// ErrGap: a delivery is missing (dropped by a slow connection, or the
	// consumer was made again); the values must be read whole again.
	ErrGap = errors.New("gate feed: a delivery is missing")
	// ErrSilent: neither values nor heartbeats came for three heartbeats.
	ErrSilent = errors.New("gate feed: the consumer went silent")
	// ErrRefused: clearing refused the request (its reason follows).
	ErrRefused = errors.New("gate feed refused by clearing")
	// ErrMoved: clearing moved the feed to another delivery subject at a
	// request this watch did not make (fare.GateFeedMovedHeader): another
	// holder of the terminal's key reads it now.
	ErrMoved = errors.New("gate feed moved to another inbox at a request this gate did not make: another holder of its key is asking for its feeds")
)

// Watch is one feed: Updates yields the values, then nil once the values
// the bucket held when the feed began have all come, then the values
// written since; it is closed when the feed ends, Err saying why.
type Watch struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	prefix  string // $KV.<bucket>.
	grant   fare.GateFeedGrant
	updates chan *Entry
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

// RetakeAfter is how long a gate waits before asking for a feed clearing
// moved away (ErrMoved): past clearing's half second between grants of one
// feed, sooner being refused as too soon.
const RetakeAfter = 600 * time.Millisecond

// requestTimeout bounds the wait for clearing's answer: shorter than a
// gate's wait for its lists at start (5 s), so that a request clearing
// dropped (its queue full in a flood) is asked again in time; clearing
// drops a request that waited longer (clearing's feedStale).
const requestTimeout = 4 * time.Second

// pollEvery is how often a watch waiting for a delivery checks its context
// and the heartbeat deadline.
const pollEvery = 250 * time.Millisecond

// Start asks clearing, over nc (a terminal's connection whose inbox prefix
// is fare.TerminalInboxPrefix(terminal)), for terminal's feed and starts
// following it, reading the values whole first. The watch runs until ctx
// ends, Stop is called or the feed fails.
func Start(ctx context.Context, nc *nats.Conn, terminal, feed string) (*Watch, error) {
	return start(ctx, nc, terminal, feed, nil)
}

// Resume is Start for a terminal whose copy of the feed stands at pos: if
// clearing grants it (Resumed), the feed yields only the values written
// after pos (then nil, then what comes); otherwise it yields the values
// whole, as Start's does. An invalid pos asks for the values whole.
func Resume(ctx context.Context, nc *nats.Conn, terminal, feed string, pos fare.GateFeedPosition) (*Watch, error) {
	if !pos.Valid() {
		return start(ctx, nc, terminal, feed, nil)
	}
	return start(ctx, nc, terminal, feed, &pos)
}

// Resumed says whether the feed yields only the values written after the
// position Resume named (false: the values whole).
func (w *Watch) Resumed() bool { return w.grant.Resumed }

// Stream names the stream the feed reads (fare.GateFeedPosition.Stream).
func (w *Watch) Stream() string { return w.grant.Stream }

// Head is, for a resumed feed, its head value (a gate list's, or the
// terminal's face head) as the bucket held it when the feed was granted
// (nil: none, or not resumed).
// It is clearing's to sign: the caller verifies it.
func (w *Watch) Head() []byte { return w.grant.Head }

func start(ctx context.Context, nc *nats.Conn, terminal, feed string, resume *fare.GateFeedPosition) (*Watch, error) {
	stream, _, ok := fare.GateFeedStream(terminal, feed)
	if !ok {
		return nil, fmt.Errorf("gate feed %q: no such feed", feed)
	}
	w := &Watch{nc: nc, prefix: "$KV." + strings.TrimPrefix(stream, "KV_") + ".", updates: make(chan *Entry, 256), done: make(chan struct{})}
	deliver := nc.NewInbox()
	if !strings.HasPrefix(deliver, fare.TerminalInboxPrefix(terminal)+".") {
		return nil, fmt.Errorf("gate feed %s: the connection's inbox %q is not terminal %s's (nats.CustomInboxPrefix)", feed, deliver, terminal)
	}
	// Subscribed before asking: the consumer delivers as soon as it is made.
	sub, err := nc.SubscribeSync(deliver)
	if err != nil {
		return nil, fmt.Errorf("gate feed %s: subscribe: %w", feed, err)
	}
	req, _ := json.Marshal(fare.GateFeedRequest{Deliver: deliver, Resume: resume})
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	resp, err := nc.RequestWithContext(rctx, fare.GateFeedSubject(terminal, feed), req)
	cancel()
	if err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("gate feed %s: ask clearing: %w", feed, err)
	}
	if err := json.Unmarshal(resp.Data, &w.grant); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("gate feed %s: clearing's answer: %w", feed, err)
	}
	if w.grant.Error != "" || w.grant.Consumer == "" || w.grant.HeartbeatMs <= 0 {
		sub.Unsubscribe()
		return nil, fmt.Errorf("%w: %s: %s", ErrRefused, feed, w.grant.Error)
	}
	if w.grant.Resumed && (resume == nil || w.grant.Stream != resume.Stream) {
		// A resumption not asked for, or of another stream, would leave
		// the copy without the values it lacks.
		sub.Unsubscribe()
		return nil, fmt.Errorf("%w: %s: a resumption of stream %q granted for %v", ErrRefused, feed, w.grant.Stream, resume)
	}
	w.sub = sub
	wctx, stop := context.WithCancel(ctx)
	w.cancel = stop
	// An ended context ends the wait for the next delivery at once (an
	// unsubscribed subscription's NextMsg returns), not a poll later.
	unhook := context.AfterFunc(wctx, func() { sub.Unsubscribe() })
	go func() {
		defer unhook()
		defer stop() // a feed that ended on its own releases its context
		w.run(wctx)
	}()
	return w, nil
}

// Updates is the feed's values (see Watch).
func (w *Watch) Updates() <-chan *Entry { return w.updates }

// Err is why the feed ended (nil: stopped, or its context ended); valid
// once Updates is closed.
func (w *Watch) Err() error { return w.err }

// Stop ends the watch and waits for its goroutine. Clearing's consumer
// goes once it has had no subscriber for its inactive threshold, or when
// the terminal asks for the feed again.
func (w *Watch) Stop() {
	w.cancel()
	<-w.done
}

func (w *Watch) run(ctx context.Context) {
	defer close(w.done)
	defer close(w.updates)
	defer w.sub.Unsubscribe()
	send := func(e *Entry) bool {
		select {
		case w.updates <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	caughtUp := w.grant.Pending == 0
	if caughtUp && !send(nil) {
		return
	}
	silentAfter := 3 * time.Duration(w.grant.HeartbeatMs) * time.Millisecond
	last := time.Now()
	var delivered uint64 // the last consumer sequence read
	for {
		m, err := w.sub.NextMsg(pollEvery)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, nats.ErrTimeout):
			if time.Since(last) > silentAfter {
				w.err = ErrSilent
				return
			}
			continue
		case err != nil:
			w.err = fmt.Errorf("gate feed: %w", err)
			return
		}
		last = time.Now()
		if len(m.Data) == 0 && m.Header.Get("Status") == "100" {
			// A heartbeat (saying the last consumer sequence sent, and
			// where to answer if the consumer stalled) or a flow-control
			// request, whose reply subject is the answer.
			if m.Reply != "" {
				w.nc.Publish(m.Reply, nil)
			}
			if stalled := m.Header.Get("Nats-Consumer-Stalled"); stalled != "" {
				w.nc.Publish(stalled, nil)
			}
			if s := m.Header.Get("Nats-Last-Consumer"); s != "" && s != fmt.Sprint(delivered) {
				w.err = fmt.Errorf("%w: the consumer sent up to %s, %d arrived", ErrGap, s, delivered)
				return
			}
			// An idle heartbeat with everything sent arrived: read whole,
			// even if values counted at the start went before their
			// delivery (a purge), which no delivery's pending would say.
			if !caughtUp && m.Reply == "" && m.Header.Get("Nats-Consumer-Stalled") == "" && m.Header.Get("Nats-Last-Consumer") != "" {
				caughtUp = true
				if !send(nil) {
					return
				}
				last = time.Now()
			}
			continue
		}
		if at := m.Header.Get(fare.GateFeedMovedHeader); at != "" && len(m.Data) == 0 {
			// Only clearing publishes into a terminal's inbox.
			w.err = fmt.Errorf("%w (at %.40s)", ErrMoved, at)
			return
		}
		meta, err := m.Metadata()
		if err != nil || meta.Consumer != w.grant.Consumer || !strings.HasPrefix(m.Subject, w.prefix) {
			continue // not the feed's: nothing else is delivered here
		}
		if meta.Sequence.Consumer != delivered+1 {
			w.err = fmt.Errorf("%w: consumer sequence %d after %d", ErrGap, meta.Sequence.Consumer, delivered)
			return
		}
		delivered = meta.Sequence.Consumer
		e := &Entry{Key: m.Subject[len(w.prefix):], Value: m.Data, Revision: meta.Sequence.Stream}
		if len(m.Header) > 0 {
			e.Op = m.Header.Get("KV-Operation")
		}
		if !send(e) {
			return
		}
		last = time.Now() // the wait for the reader is no silence of the consumer's
		if !caughtUp && meta.NumPending == 0 {
			caughtUp = true
			if !send(nil) {
				return
			}
		}
	}
}
