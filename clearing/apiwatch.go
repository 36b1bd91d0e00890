package clearing

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// A terminal asks clearing for its gate feeds (gatefeeds.go) when it
// starts or reconnects: three requests. Each costs clearing a consumer
// made and deleted, and NATS has no per-user rate limit, so clearing
// counts them: a terminal far over what a gate asks is named in the log
// and counted, for its operator to revoke its key, and the embedded server
// refuses it for a while (Config.FlooderBar), disconnecting it. The same
// count still reads the server's API audit advisories: a user of the
// terminals' account can make no JetStream API request (it has no
// JetStream and is lent none), but one that could (a verifier's, an
// external server configured by hand) is named as well. (When terminals
// were lent the API, an outside red team's four connections grew clearing
// by 130 MB a second with its answers.)

// apiBudget is how many requests one terminal may make in apiWindow
// before it is named: a gate asks for three feeds when it starts or
// reconnects.
const (
	apiBudget = 200
	apiWindow = 10 * time.Second
)

// apiWatch counts each terminal's JetStream API requests per window.
type apiWatch struct {
	mu      sync.Mutex
	start   time.Time
	counts  map[string]int       // NATS user -> requests in this window
	flagged map[string]uint64    // terminal -> windows it went over budget
	bars    map[string]time.Time // terminal -> refused by the embedded server until
	// streak counts a terminal's bars, each within flooderMemory of the
	// last (barredAt): what doubles its next one.
	streak   map[string]uint64
	barredAt map[string]time.Time
}

// maxFlooderBar bounds a repeated flooder's bar: its key's revocation is
// its operator's to make.
const maxFlooderBar = time.Hour

// flooderMemory is how long a flag counts towards a longer bar: a
// terminal flagged again after a day without one starts at the base bar.
const flooderMemory = 24 * time.Hour

// bar refuses terminal until now plus base, doubled for each time it was
// flagged before within flooderMemory of the one before, at most
// maxFlooderBar; it returns the bar's end.
func (w *apiWatch) bar(terminal string, now time.Time, base time.Duration) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.barredAt == nil {
		w.barredAt = map[string]time.Time{}
	}
	if last, ok := w.barredAt[terminal]; ok && now.Sub(last) > flooderMemory {
		w.streak[terminal] = 0
	}
	if w.streak == nil {
		w.streak = map[string]uint64{}
	}
	w.streak[terminal]++
	w.barredAt[terminal] = now
	d := base
	for i := uint64(1); i < w.streak[terminal] && d < maxFlooderBar; i++ {
		d *= 2
	}
	if w.bars == nil {
		w.bars = map[string]time.Time{}
	}
	w.bars[terminal] = now.Add(min(d, maxFlooderBar))
	return w.bars[terminal]
}

// barred is the set of terminals refused at now; bars that have ended go.
func (w *apiWatch) barred(now time.Time) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for t, until := range w.bars {
		if now.Before(until) {
			out[t] = true
		} else {
			delete(w.bars, t)
		}
	}
	return out
}

// barredNow reports whether terminal is barred at now: a flood named one
// way is not barred again, twice as long, for what its same messages go
// over another way.
func (w *apiWatch) barredNow(terminal string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	until, ok := w.bars[terminal]
	return ok && now.Before(until)
}

// note counts one request of user at now and reports whether the user has
// just gone over its budget in this window (once per window).
func (w *apiWatch) note(user string, now time.Time) bool {
	return w.noteN(user, now, 1, apiBudget)
}

// noteN counts n of user's at now against budget (a window's worth) and
// reports whether the user has just gone over it in this window (once per
// window).
func (w *apiWatch) noteN(user string, now time.Time, n, budget int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.start) >= apiWindow || w.counts == nil {
		w.start, w.counts = now, map[string]int{}
	}
	before := w.counts[user]
	w.counts[user] += n
	return before <= budget && w.counts[user] > budget
}

// flag records that terminal went over its budget.
func (w *apiWatch) flag(terminal string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flagged == nil {
		w.flagged = map[string]uint64{}
	}
	w.flagged[terminal]++
}

// flooders is a copy of the terminals flagged so far, with how many times.
func (w *apiWatch) flooders() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]uint64, len(w.flagged))
	for k, v := range w.flagged {
		out[k] = v
	}
	return out
}

// watchAPIRate counts an API audit advisory against its caller and names a
// terminal going over budget.
func (c *Clearing) watchAPIRate(data []byte) {
	var a struct {
		Client struct {
			User string `json:"user"`
		} `json:"client"`
	}
	if json.Unmarshal(data, &a) != nil || a.Client.User == "" || a.Client.User == c.natsID.public {
		return
	}
	if !c.apiCalls.note(a.Client.User, time.Now()) {
		return
	}
	term := c.terminalOfNATSUser(a.Client.User)
	if term == "" {
		return // a verifier, or a user the registry does not know
	}
	c.flagFlooder(term, "JetStream API requests", apiBudget)
}

// flagFlooder names terminal, which went over its budget (limit) of what:
// its gate feed requests, its JetStream API requests (which its account
// cannot make since gate feeds), the messages of its that clearing
// quarantined, or its connections. The embedded server refuses it for a
// while (Config.FlooderBar).
func (c *Clearing) flagFlooder(term, what string, limit int) {
	c.apiCalls.flag(term)
	if c.embedded == nil || c.cfg.FlooderBar < 0 {
		c.log.Error("a terminal is flooding clearing with "+what+"; revoke its key if this is no restart storm",
			"terminal", term, "over", limit, "window", apiWindow.String())
		return
	}
	// Refused as followRegistry reloads the server's users without it, at
	// once.
	until := c.apiCalls.bar(term, time.Now(), c.cfg.FlooderBar)
	select {
	case c.barNow <- struct{}{}:
	default:
	}
	c.log.Error("a terminal is flooding clearing with "+what+": the NATS server refuses it for a while; revoke its key if this is no restart storm",
		"terminal", term, "over", limit, "window", apiWindow.String(), "refused_until", until.UTC().Format(time.RFC3339))
}

// quarantineBudget is how many of one terminal's messages clearing (or a
// verifier) may quarantine as junk in apiWindow before it is named and
// barred: a stolen key publishing junk on its own event subject sends as
// fast as its connection goes, and each message waits in the event
// stream's ingest queue ahead of every other gate's (an outside red team's
// flood delayed everyone's events while it lasted).
const quarantineBudget = 1000

// junkReasons are the quarantine reasons only a misused key gives: a
// message that is no event, one signed by another key, one naming another
// terminal than its subject. An honest gate's events held or refused for
// its clock, its sequence or its stop (re-sent every round until clearing
// takes them) are not counted: barring it would cut its deny list.
var junkReasons = map[string]bool{ReasonMalformed: true, ReasonBadSignature: true, ReasonSubjectMismatch: true}

// countJunk counts a quarantined message (clearing's, on
// fare.QuarantineSubject, or a verifier's, on its partition's
// VerifierQuarantineSubject) against the terminal whose raw event subject
// it came on, when its reason is junk's (or a replay's: replayBudget).
// Messages a verifier forwarded (faregate.verified.>) are not counted: a
// verifier could otherwise have any gate of its partition barred for its
// own forgeries. A verifier's report names the subject in a header it
// writes itself, so it counts only
// against a terminal of the verifier's own partition (reckoned from the
// registry's operator of the terminal): partition 0's verifier had any
// gate of any partition barred with forged reports (an outside review).
// Junk on its own partition's raw subjects only a verifier sees; a
// compromised one can get its own partition's gates barred, as it can
// forward forgeries of them.
func (c *Clearing) countJunk(m *nats.Msg) {
	reason := m.Header.Get(fare.HeaderReason)
	if !junkReasons[reason] && !replayReasons[reason] {
		return
	}
	subj := m.Header.Get(quarantineSubjectHeader)
	if !strings.HasPrefix(subj, "faregate.events.") {
		return
	}
	term := subj[strings.LastIndexByte(subj, '.')+1:] // its own subject, mapped to a partition or not
	if fare.ValidateID(term) != nil {
		return
	}
	if p, ok := strings.CutPrefix(m.Subject, fare.QuarantineSubject+"."); ok {
		rt, known := c.terminals.TerminalKey(term)
		if !known || strconv.Itoa(PartitionOf(rt.Operator, term, c.cfg.VerifierPartitions)) != p {
			return
		}
	}
	if replayReasons[reason] {
		sent, err := time.Parse(time.RFC3339Nano, m.Header.Get(sentHeader))
		if err != nil {
			sent = time.Now()
		}
		var seq uint64 // 0: not read, counted in the total only
		if ev, err := fare.Decode(m.Data); err == nil {
			seq = ev.Sequence
		}
		c.noteReplay(term, seq, sent)
		return
	}
	if c.junk.noteN(term, time.Now(), 1, quarantineBudget) {
		c.flagFlooder(term, "junk on its own event subject (messages quarantined as malformed, badly signed or another terminal's)", quarantineBudget)
	}
}

// Replays: a stolen key sends its own validly signed events again, with
// fresh message ids, as fast as its connection goes, and each waits in the
// event stream's ingest queue ahead of every other gate's (an outside red
// team's flood held back four in five of another gate's taps, unnamed:
// junk's budget counts only what no honest gate sends). A replay is an
// event found already applied (sent afresh: not the stream's redelivery
// after a restart) or quarantined for a sequence or id clearing holds
// another event under (replayReasons). Replays are counted by when the
// terminal sent them, as the event stream stored them (sentAt), not when
// clearing reached them: a flood slows clearing down, and a backlog met at
// once (a verifier partition or clearing catching up after an outage, the
// gates' resend rounds waiting in the stream) is no flood. (A batch whose
// quarantine publish is retried shows its conflicts to the count again: a
// few times at most, at their own send time.)
//
// replaySeqBudget is how many times one sequence of a terminal may be
// replayed within one apiWindow of send time, and replayBudget how many of
// its events in all, before it is named and barred. An honest gate sends
// an unconfirmed event again once a round, its rounds at least
// ResendAfter (3 s) apart and backing off: a few times a window. A round
// sends what its outbox holds unconfirmed, and the event stream holds at
// most Limits.EventMaxPerTerminal (100,000) of one terminal's messages: a
// round of more than half that, every event already applied, is a gate
// whose clearing applied a backlog that size and did not confirm it. A
// full-speed flood of one event is named within a batch by its sequence
// (a re-check's 260,000 messages a second were named only after they had
// ended while the total alone, counted as clearing applied, was the
// bound).
const (
	replaySeqBudget = 20
	replayBudget    = 50 * quarantineBudget
)

// replayReasons are the quarantine reasons of a terminal's own signed
// events that clearing already holds others under their sequence or id.
var replayReasons = map[string]bool{ReasonSequenceConflict: true, ReasonSequenceReplayed: true, ReasonEventIDTaken: true}

// replayCounts counts replays (replayBudget) per terminal, per sequence
// and send-time window and per send-time window in all, over one apiWindow
// of clearing's own time, and names each terminal at most once in it.
type replayCounts struct {
	mu      sync.Mutex
	start   time.Time
	n       map[terminalSeq]int
	flagged map[string]bool
}

// terminalSeq keys replayCounts: seq 0 is the terminal's total (sequences
// begin at 1).
type terminalSeq struct {
	terminal string
	seq      uint64
	sent     int64 // the send-time window
}

// note counts one replay of term's seq (0: not known) sent at sent, met at
// now, and says why term goes over a budget with it, and the budget ("" if
// it does not, or was named already in this window).
func (r *replayCounts) note(term string, seq uint64, sent, now time.Time, total int) (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.start) >= apiWindow || r.n == nil {
		r.start, r.n, r.flagged = now, map[terminalSeq]int{}, map[string]bool{}
	}
	w := sent.UnixNano() / int64(apiWindow)
	why, over := "", 0
	if k := (terminalSeq{term, 0, w}); r.n[k]+1 > total {
		why, over = fmt.Sprintf("its own signed events sent again (over %d found already applied, or in conflict with what was, sent within %s)", total, apiWindow), total
	} else {
		r.n[k]++
	}
	if seq != 0 {
		if k := (terminalSeq{term, seq, w}); r.n[k]+1 > replaySeqBudget {
			why, over = fmt.Sprintf("one of its own signed events (sequence %d) sent again and again (over %d times within %s)", seq, replaySeqBudget, apiWindow), replaySeqBudget
		} else {
			r.n[k]++
		}
	}
	if why == "" || r.flagged[term] {
		return "", 0
	}
	r.flagged[term] = true
	return why, over
}

// noteReplay counts one replay of term's seq (0: not known) sent at sent,
// naming and barring term when it goes over a budget.
func (c *Clearing) noteReplay(term string, seq uint64, sent time.Time) {
	total := replayBudget
	if c.cfg.replayBudget > 0 {
		total = c.cfg.replayBudget
	}
	c.replayFlagMu.Lock()
	defer c.replayFlagMu.Unlock()
	now := time.Now()
	if why, over := c.replays.note(term, seq, sent, now, total); why != "" && !c.apiCalls.barredNow(term, now) {
		c.flagFlooder(term, why, over)
	}
}

// sentHeader carries, on a verifier's forward and on a quarantined copy,
// when the event stream stored the terminal's message (RFC 3339).
const sentHeader = "Faregate-Sent"

// sentAt is when the event stream stored the terminal's message m: m's
// own stream time, or, for a verifier's forward (forwarded), the raw
// message's, which the verifier carries in sentHeader. A terminal's own
// header is never read: only verifiers publish on the verified subjects.
func sentAt(m jetstream.Msg, forwarded bool) time.Time {
	if forwarded {
		if t, err := time.Parse(time.RFC3339Nano, m.Headers().Get(sentHeader)); err == nil {
			return t
		}
	}
	if md, err := m.Metadata(); err == nil {
		return md.Timestamp
	}
	return time.Now()
}

// countDuplicates counts a committed batch's duplicates that came afresh
// (the first delivery of their message: a stream's redelivery after a
// restart is clearing's, not the terminal's) against their terminals.
func (c *Clearing) countDuplicates(msgs []jetstream.Msg, cands []candidate, outcomes []Outcome) {
	for i, o := range outcomes {
		if o != Duplicate || i >= len(msgs) || cands[i].ev == nil {
			continue
		}
		md, err := msgs[i].Metadata()
		if err != nil || md.NumDelivered > 1 {
			continue
		}
		e := &cands[i].ev.Event
		c.noteReplay(e.Terminal, e.Sequence, sentAt(msgs[i], c.cfg.VerifierPartitions > 0))
	}
}

// maxTerminalConns is how many connections one terminal's user may hold
// on the embedded server: a gate holds one (and, for a moment after a
// reconnect, the one the server has not yet seen close). Beyond it the
// terminal is barred like a flooder (NATS has no per-user connection
// limit, and one stolen key could take every connection the terminals'
// account may hold).
const maxTerminalConns = 8

// watchTerminalConns counts each terminal user's connections to the
// embedded server every connWatchEvery, barring any over maxTerminalConns,
// until ctx ends.
func (c *Clearing) watchTerminalConns(ctx context.Context) {
	if c.embedded == nil {
		return
	}
	t := time.NewTicker(connWatchEvery)
	defer t.Stop()
	over := map[string]int{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.checkTerminalConns(over)
		}
	}
}

// connWatchEvery is how often watchTerminalConns counts.
const connWatchEvery = time.Second

// connOverChecks is how many counts in a row a terminal must be over
// maxTerminalConns to be barred: a gate reconnecting through a flaky link
// may hold a few dead connections until the server's pings close them.
const connOverChecks = 5

// checkTerminalConns counts once (watchTerminalConns); over holds, for
// each NATS user over maxTerminalConns, how many counts in a row it was.
func (c *Clearing) checkTerminalConns(over map[string]int) {
	per := c.embedded.connsByUser(TerminalsAccount)
	barred := c.apiCalls.barred(time.Now())
	for user := range over {
		if per[user] <= maxTerminalConns {
			delete(over, user)
		}
	}
	for user, n := range per {
		if n <= maxTerminalConns {
			continue
		}
		if over[user]++; over[user] < connOverChecks {
			continue
		}
		term := c.terminalOfNATSUser(user)
		if term == "" || barred[term] {
			continue
		}
		c.flagFlooder(term, fmt.Sprintf("connections (%d open; a gate holds one)", n), maxTerminalConns)
	}
}
