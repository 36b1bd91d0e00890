package simulator

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// peakTerminal is a simulated terminal for FindPeak. On the wire it is a
// real one: its registered ed25519 key signs every event, events are
// numbered by a sequence of its own, published to JetStream on its subject
// with Nats-Msg-Id as the terminal package does, over a connection with its
// own NATS identity (NKey) and permissions; every event stays in memory
// until a confirmation signed by clearing covers it, and is sent again
// after a timeout without progress. It keeps no disk outbox: it holds no
// goroutine of its own (a peakPool's worker takes its taps and resends),
// and stops with close.
type peakTerminal struct {
	cfg peakTerminalConfig
	nc  *nats.Conn
	sub *nats.Subscription

	mu         sync.Mutex
	seq        uint64       // highest sequence used
	confirmed  uint64       // clearing's verified watermark
	pend       []*peakEvent // sequences confirmed+1 .. seq
	progressAt time.Time
	backoff    time.Duration               // how long without progress starts a resend round
	resends    *backoff.ExponentialBackOff // backoff's schedule, as the terminal's
	askAt      time.Time                   // last watermark request
	round      uint64                      // resend rounds, part of resent messages' ids
	resendNext uint64                      // next sequence of a resend round; 0: none under way
	resendTo   uint64
	hold       bool // no resend round starts (measureCeiling signing)

	published atomic.Uint64
	refused   atomic.Uint64 // confirmations that did not verify or match
	rejected  atomic.Uint64 // events clearing rejected for good
	logged    atomic.Uint64
	inbox     string
}

type peakTerminalConfig struct {
	id, operator, stop string
	key                ed25519.PrivateKey
	url, ca            string
	clearingKey        ed25519.PublicKey
	resendAfter        time.Duration
	lat                *peakLatencies
	logger             *slog.Logger
	now                func() time.Time // the city's clock: events' device time
}

// peakEvent is one signed event awaiting confirmation.
type peakEvent struct {
	seq   uint64
	id    string
	raw   []byte
	step  int
	tapAt time.Time
}

func openPeakTerminal(cfg peakTerminalConfig) (*peakTerminal, error) {
	ident, err := fare.NewNATSIdentity(cfg.key, cfg.id)
	if err != nil {
		return nil, fmt.Errorf("terminal %s: %w", cfg.id, err)
	}
	t := &peakTerminal{cfg: cfg, progressAt: time.Now(),
		resends: &backoff.ExponentialBackOff{InitialInterval: cfg.resendAfter, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: time.Minute}}
	t.resends.Reset()
	t.backoff = t.resends.NextBackOff()
	opts := append(terminal.NATSOptions(ident, cfg.id, cfg.ca), nats.Name("faregate-peak-terminal-"+cfg.id),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if t.nc, err = nats.Connect(cfg.url, opts...); err != nil {
		return nil, fmt.Errorf("terminal %s: connect NATS: %w", cfg.id, err)
	}
	// Confirmations: announced by clearing, and answers to watermark
	// requests on the terminal's own inbox.
	t.inbox = t.nc.NewInbox()
	handle := func(m *nats.Msg) { t.handle(m.Data, time.Now()) }
	if t.sub, err = t.nc.Subscribe(fare.AppliedSubject(cfg.id), handle); err == nil {
		_, err = t.nc.Subscribe(t.inbox, handle)
	}
	if err != nil {
		t.nc.Close()
		return nil, fmt.Errorf("terminal %s: subscribe: %w", cfg.id, err)
	}
	return t, nil
}

func (t *peakTerminal) close() { t.nc.Close() }

func (t *peakTerminal) log(what string, err error) {
	if t.logged.Add(1) <= 3 { // the first few: the rest are alike
		t.cfg.logger.Warn("simulated terminal", "terminal", t.cfg.id, "what", what, "err", err)
	}
}

// sign numbers and signs a tap's event and keeps it until confirmed. due
// is when the rider's tap was due: its latency runs from then, so a worker
// catching up on a backlog counts the wait (no coordinated omission).
func (t *peakTerminal) sign(tap peakTap, step int, due time.Time) (*peakEvent, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ev := fare.Event{
		ID: fare.NewEventID(t.cfg.now()), Terminal: t.cfg.id, Operator: t.cfg.operator, Stop: t.cfg.stop,
		Gate: gateOf(t.cfg.id), Direction: tap.dir, Media: tap.rider.Media, MediaToken: tap.rider.Token,
		DeviceTime: t.cfg.now().UTC(), Decision: fare.Accepted, Reason: "card", Sequence: t.seq + 1,
	}
	raw, err := fare.Sign(&ev, t.cfg.key)
	if err != nil {
		return nil, err
	}
	t.seq++
	pe := &peakEvent{seq: t.seq, id: ev.ID.String(), raw: raw, step: step, tapAt: due}
	t.pend = append(t.pend, pe)
	return pe, nil
}

// publish sends ev to JetStream; a resend gets a fresh message id (as the
// terminal package's: JetStream's duplicate window would drop the very
// copy clearing lacks). A failed publish is left to the resend.
func (t *peakTerminal) publish(ev *peakEvent, resent bool) bool {
	m := nats.NewMsg(fare.EventSubject(t.cfg.operator, t.cfg.id))
	m.Data = ev.raw
	id := ev.id
	t.mu.Lock()
	round := t.round
	t.mu.Unlock()
	if resent && round > 0 {
		id += "." + strconv.FormatUint(round, 10)
	}
	m.Header.Set(nats.MsgIdHdr, id)
	// A plain publish, as the terminal package's: the event stream sends
	// no acks; clearing's confirmation says the event arrived.
	if err := t.nc.PublishMsg(m); err != nil {
		t.log("publish", err)
		return false
	}
	t.published.Add(1)
	return true
}

// publishAll publishes evs (signed beforehand) as fast as the connection
// takes them, their tap time set to start.
func (t *peakTerminal) publishAll(evs []*peakEvent, start time.Time) {
	t.mu.Lock()
	for _, ev := range evs {
		ev.tapAt = start
	}
	t.mu.Unlock()
	for _, ev := range evs {
		m := nats.NewMsg(fare.EventSubject(t.cfg.operator, t.cfg.id))
		m.Data = ev.raw
		m.Header.Set(nats.MsgIdHdr, ev.id)
		if err := t.nc.PublishMsg(m); err != nil {
			t.log("publish", err)
			continue
		}
		t.published.Add(1)
	}
	// The burst must arrive whole (a gap would hold the watermark back for
	// a resend round): wait until the server has taken it.
	if err := t.nc.FlushTimeout(10 * time.Second); err != nil {
		t.log("flush", err)
	}
}

// resend goes back to the watermark when clearing made no progress for
// the resend timeout (doubling up to a minute), as a real terminal does,
// sending at most 2048 events a call; it asks clearing for its watermark
// once a second while events wait.
func (t *peakTerminal) resend(now time.Time) {
	t.mu.Lock()
	if t.seq == t.confirmed {
		t.progressAt = now
		t.mu.Unlock()
		return
	}
	if t.hold {
		t.progressAt = now // the no-progress clock starts once released
	}
	if t.resendNext == 0 && !t.hold && now.Sub(t.progressAt) > t.backoff {
		t.round++
		t.resendNext, t.resendTo = t.confirmed+1, t.seq
		t.progressAt = now
		t.backoff = t.resends.NextBackOff()
	}
	var evs []*peakEvent
	if t.resendNext != 0 {
		if t.resendNext <= t.confirmed {
			t.resendNext = t.confirmed + 1
		}
		for s := t.resendNext; s <= t.resendTo && len(evs) < 2048; s++ {
			evs = append(evs, t.pend[s-t.confirmed-1])
		}
		t.resendNext += uint64(len(evs))
		if t.resendNext > t.resendTo {
			t.resendNext = 0
		}
	}
	conf := t.confirmed
	t.mu.Unlock()
	for _, ev := range evs {
		if !t.publish(ev, true) {
			// Refused (too many unacknowledged publishes): this round
			// goes on from here at the next tick, not after a whole
			// resend timeout.
			t.mu.Lock()
			if t.resendNext == 0 || t.resendNext > ev.seq {
				t.resendNext = ev.seq
			}
			t.mu.Unlock()
			break
		}
	}
	if now.Sub(t.askAt) >= time.Second {
		t.askAt = now // only the owning worker calls resend
		_ = t.nc.PublishRequest(fare.WatermarkSubject(t.cfg.id), t.inbox, fare.WatermarkRequest(conf, nil))
	}
}

// handle acts on a confirmation: verified with clearing's key, for this
// terminal, within the events it numbered, its digest that of this
// terminal's own event at the watermark. Confirmed events are dropped and
// their tap-to-confirmation latency recorded; rejected ones counted.
func (t *peakTerminal) handle(msg []byte, now time.Time) {
	_, b, err := fare.Unbundle(msg)
	if err != nil {
		t.refused.Add(1)
		return
	}
	c, err := fare.VerifyConfirmation(b, []ed25519.PublicKey{t.cfg.clearingKey})
	if err != nil || c.Terminal != t.cfg.id {
		t.refused.Add(1)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.Watermark > t.seq {
		t.refused.Add(1)
		return
	}
	conf := t.confirmed
	if c.Highest > c.Watermark && c.Watermark == conf && t.resendNext == 0 {
		// Clearing holds later sequences: one went missing. Send again.
		t.round++
		t.resendNext, t.resendTo = conf+1, t.seq
	}
	if c.Watermark <= conf || c.From > conf {
		return // stale, or starts past what this terminal knows
	}
	n := c.Watermark - conf
	if fare.EventDigest(t.pend[n-1].raw) != c.Digest {
		t.refused.Add(1)
		return
	}
	for _, r := range c.Rejected {
		if r.Sequence > conf && r.Sequence <= c.Watermark {
			t.rejected.Add(1)
		}
	}
	for _, ev := range t.pend[:n] {
		t.cfg.lat.add(ev.step, now.Sub(ev.tapAt))
	}
	clear(t.pend[:n])
	t.pend = t.pend[n:]
	t.confirmed = c.Watermark
	t.progressAt = now
	t.resends.Reset()
	t.backoff = t.resends.NextBackOff()
}

// holdResends stops (true) or allows (false) new resend rounds; the time
// without progress that starts one counts from the release.
func (t *peakTerminal) holdResends(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hold = on
	t.progressAt = time.Now()
}

// pending is how many events wait for confirmation.
func (t *peakTerminal) pending() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq - t.confirmed
}

func (t *peakTerminal) lastSeq() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq
}

// ages are the ages at now of step's events still unconfirmed.
func (t *peakTerminal) ages(step int, now time.Time) []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ds []time.Duration
	for _, ev := range t.pend {
		if ev.step == step {
			ds = append(ds, now.Sub(ev.tapAt))
		}
	}
	return ds
}
