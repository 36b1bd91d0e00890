package terminal

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/faregate/faregate/fare"
)

// confirmationFor signs clearing's answer to a new outbox: it holds
// terminal's sequences up to highest, contiguous to watermark.
func confirmationFor(t *testing.T, key ed25519.PrivateKey, terminal string, watermark, highest uint64) []byte {
	t.Helper()
	c := fare.Confirmation{Terminal: terminal, Watermark: watermark, Highest: highest, IssuedAt: time.Now().UTC(), Nonce: testNonce}
	if watermark > 0 {
		c.Digest[0] = 1 // some event of the lost outbox
	}
	b, err := c.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return fare.Bundle(nil, b)
}

// TestNewOutboxAnchors: a new outbox takes taps at once but is unanchored
// until a trusted confirmation for this terminal says where clearing's
// record ends. Forged, malformed and other terminals' confirmations are
// refused and change nothing. A trusted one renumbers the taps after
// clearing's highest sequence, each signed again by the terminal's key,
// and the sequence goes on from there. An outbox with a history is never
// unanchored.
func TestNewOutboxAnchors(t *testing.T) {
	_, stranger, _ := ed25519.GenerateKey(nil)
	for _, c := range []struct {
		name     string
		msg      func(t *testing.T) []byte
		anchored bool
		first    uint64 // the first tap's sequence after
		refused  uint64
	}{
		{name: "clearing never saw the terminal", msg: func(t *testing.T) []byte { return confirmationFor(t, testClearingKey, "t1", 0, 0) }, anchored: true, first: 1},
		{name: "clearing holds 1000 of a lost outbox", msg: func(t *testing.T) []byte { return confirmationFor(t, testClearingKey, "t1", 1000, 1000) }, anchored: true, first: 1001},
		// After the watermark: this outbox fills the gap (anchored after
		// 1200, clearing's watermark could never pass 1001 and no event
		// of this outbox would ever be confirmed: an outside review).
		{name: "clearing holds up to 1200 with a gap after 1000", msg: func(t *testing.T) []byte { return confirmationFor(t, testClearingKey, "t1", 1000, 1200) }, anchored: true, first: 1001},
		{name: "forged: another key", msg: func(t *testing.T) []byte { return confirmationFor(t, stranger, "t1", 1000, 1000) }, refused: 1},
		{name: "another terminal's", msg: func(t *testing.T) []byte { return confirmationFor(t, testClearingKey, "t2", 1000, 1000) }, refused: 1},
		{name: "malformed", msg: func(*testing.T) []byte { return []byte("garbage") }, refused: 1},
		{name: "truncated", msg: func(t *testing.T) []byte { b := confirmationFor(t, testClearingKey, "t1", 5, 5); return b[:len(b)-1] }, refused: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			term := openTest(t, dir)
			defer term.Close()
			if !term.Unanchored() {
				t.Fatal("a new outbox is anchored before hearing from clearing")
			}
			var taps []fare.Event
			for i := range 300 { // more than one renumbering step
				ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("c%d", i)})
				if err != nil || ev.Sequence != uint64(i+1) {
					t.Fatalf("tap %d while unanchored: seq %d, %v", i, ev.Sequence, err)
				}
				taps = append(taps, ev)
			}
			term.anchorWith(c.msg(t))
			if term.Unanchored() == c.anchored || term.RefusedConfirmations() != c.refused {
				t.Fatalf("unanchored %v, refused %d; want %v, %d", term.Unanchored(), term.RefusedConfirmations(), !c.anchored, c.refused)
			}
			if !c.anchored {
				if term.LastSequence() != 300 || term.Confirmed() != 0 {
					t.Fatalf("a refused confirmation moved the outbox: last %d, confirmed %d", term.LastSequence(), term.Confirmed())
				}
				return
			}
			checkRenumbered(t, term, taps, c.first)
			ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "after"})
			if err != nil || ev.Sequence != c.first+300 {
				t.Fatalf("first tap after anchoring: seq %d, %v; want %d", ev.Sequence, err, c.first+300)
			}
			// Anchored for good: reopened, it waits for nothing.
			term.Close()
			term = openTest(t, dir)
			if term.Unanchored() || term.LastSequence() != c.first+300 || term.Pending() != 301 {
				t.Fatalf("reopened: unanchored %v, last %d, pending %d", term.Unanchored(), term.LastSequence(), term.Pending())
			}
		})
	}
}

// checkRenumbered checks that taps, renumbered from first, are in the
// outbox under their new sequences, the same events signed again.
func checkRenumbered(t *testing.T, term *Terminal, taps []fare.Event, first uint64) {
	t.Helper()
	if want := first - 1 + uint64(len(taps)); term.LastSequence() != want || term.Confirmed() != first-1 || term.Pending() != uint64(len(taps)) {
		t.Fatalf("last %d, confirmed %d, pending %d; want %d, %d, %d", term.LastSequence(), term.Confirmed(), term.Pending(), want, first-1, len(taps))
	}
	for i, e := range taps {
		seq := first + uint64(i)
		raw, err := term.outboxEntry(seq)
		if err != nil {
			t.Fatalf("outbox entry %d: %v", seq, err)
		}
		s, err := fare.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(term.PublicKey()); err != nil {
			t.Fatalf("entry %d: %v", seq, err)
		}
		want := e
		want.Sequence = seq
		if s.Event.ID != want.ID || s.Sequence != seq || s.MediaToken != want.MediaToken || !s.DeviceTime.Equal(want.DeviceTime) {
			t.Fatalf("entry %d holds %+v, want tap %d renumbered", seq, s.Event, i)
		}
	}
	if first > 1 {
		if _, err := term.outboxEntry(1); err == nil {
			t.Fatal("sequence 1 is still in the outbox after renumbering")
		}
	}
}

// TestUnboundAnchorRefused: a genuine confirmation that is not the answer
// to this request (no nonce, as announcements and old answers have, or
// another request's, replayed a minute later) is refused and changes
// nothing; the answer echoing the request's nonce anchors the outbox.
func TestUnboundAnchorRefused(t *testing.T) {
	term := openTest(t, t.TempDir())
	defer term.Close()
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
		t.Fatal(err)
	}
	sign := func(nonce []byte) []byte {
		c := fare.Confirmation{Terminal: "t1", Watermark: 3, Highest: 3, IssuedAt: time.Now().UTC(), Nonce: nonce}
		c.Digest[0] = 1
		b, err := c.Sign(testClearingKey)
		if err != nil {
			t.Fatal(err)
		}
		return fare.Bundle(nil, b)
	}
	for i, c := range []struct {
		name         string
		asked, nonce []byte
	}{
		{"no nonce (an announcement, or an old clearing's answer)", []byte("request-nonce-01"), nil},
		{"another request's answer", []byte("request-nonce-02"), []byte("request-nonce-01")},
		{"an answer to a request never made", nil, []byte("request-nonce-01")},
	} {
		term.anchorAsked(sign(c.nonce), c.asked)
		if !term.Unanchored() || term.LastSequence() != 1 || term.RefusedConfirmations() != uint64(i+1) {
			t.Fatalf("%s: unanchored %v, last %d, refused %d", c.name, term.Unanchored(), term.LastSequence(), term.RefusedConfirmations())
		}
	}
	if n := testutil.ToFloat64(term.refusedBy.WithLabelValues(RefusedNonce)); n != 3 {
		t.Fatalf("%v refusals counted as %s, want 3", n, RefusedNonce)
	}
	term.anchorAsked(sign([]byte("request-nonce-03")), []byte("request-nonce-03"))
	if term.Unanchored() || term.LastSequence() != 4 {
		t.Fatalf("the answer to this request: unanchored %v, last %d", term.Unanchored(), term.LastSequence())
	}
}

// TestRebaseResumesAfterACrash: a renumbering interrupted after it began
// is finished when the outbox is opened again, before any tap is taken.
func TestRebaseResumesAfterACrash(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	var taps []fare.Event
	for i := range 40 {
		ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("c%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		taps = append(taps, ev)
	}
	if err := term.interruptRebase(7); err != nil {
		t.Fatal(err)
	}
	term.Close()
	term = openTest(t, dir)
	defer term.Close()
	if term.Unanchored() {
		t.Fatal("still unanchored after the renumbering finished")
	}
	checkRenumbered(t, term, taps, 8)
}

// TestRebaseRefusesADamagedEntry: a renumbering does not sign again an
// entry the disk damaged (decoded, it would become a valid event of what
// the damage made of it: an outside review); the gate does not open, says
// which entry to give up, and once it is given up the renumbering ends
// with the stand-in under its new sequence.
func TestRebaseRefusesADamagedEntry(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	tapN(t, term, 5)
	if err := term.interruptRebase(7); err != nil {
		t.Fatal(err)
	}
	term.Close()
	damageEntry(t, filepath.Join(dir, "outbox"), 3)
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"),
		NATSURL: "nats://127.0.0.1:1", ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}}
	if term, err := Open(cfg); err == nil {
		term.Close()
		t.Fatal("an outbox whose renumbering meets a damaged entry opened")
	} else if !strings.Contains(err.Error(), "outbox entry 3 is damaged") || !strings.Contains(err.Error(), "give-up --sequence 3") {
		t.Fatalf("the renumbering over a damaged entry: %v, want it refused naming the entry and give-up", err)
	}
	if _, _, err := GiveUpDamaged(cfg, 3); err != nil {
		t.Fatalf("give up the damaged entry: %v", err)
	}
	term = openTest(t, dir)
	defer term.Close()
	events := outboxEvents(t, term)
	if len(events) != 5 || events[0].Sequence != 8 || events[4].Sequence != 12 {
		t.Fatalf("after the give-up: %d events from %d, want 5 from 8", len(events), events[0].Sequence)
	}
	if e := events[2]; e.Decision != fare.Denied || e.Reason != ReasonEntryDamaged || e.Verify(term.PublicKey()) != nil {
		t.Fatalf("sequence 10: %+v, want the signed stand-in", e.Event)
	}
}

// TestRebaseFailedPartWay: a renumbering that fails part way (here on an
// entry the disk damaged, below its first step) numbers no tap until it is
// finished (a tap numbered meanwhile overwrote an event already moved: an
// outside review), and a later answer resumes it as recorded rather than
// recording it again over its own moves; once the entry is given up the
// next start finishes it, every event where it belongs.
func TestRebaseFailedPartWay(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	const n = 600 // three renumbering steps
	taps := make([]fare.Event, 0, n)
	for i := range n {
		ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("c%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		taps = append(taps, ev)
	}
	term.Close()
	damageEntry(t, filepath.Join(dir, "outbox"), 100)
	term = openTest(t, dir)
	term.anchorWith(confirmationFor(t, testClearingKey, "t1", 50, 50))
	if !term.Unanchored() {
		t.Fatal("anchored over a damaged entry")
	}
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "meanwhile"}); err == nil || !strings.Contains(err.Error(), "outbox entry 100 is damaged") {
		t.Fatalf("a tap while the renumbering is unfinished: %v, want it refused naming the entry", err)
	}
	if err := term.Ready(); err == nil || !strings.Contains(err.Error(), "renumbering") {
		t.Fatalf("ready while the renumbering is unfinished: %v", err)
	}
	term.anchorWith(confirmationFor(t, testClearingKey, "t1", 50, 50)) // again: resumed, still failing
	term.Close()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := GiveUpDamaged(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"),
		NATSURL: "nats://127.0.0.1:1", ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}}, 100); err != nil {
		t.Fatal(err)
	}
	term = openTest(t, dir)
	defer term.Close()
	events := outboxEvents(t, term)
	if len(events) != n || term.LastSequence() != 50+n || term.Confirmed() != 50 || term.Unanchored() {
		t.Fatalf("after the give-up: %d events, last %d, confirmed %d, unanchored %v; want %d, %d, 50, false",
			len(events), term.LastSequence(), term.Confirmed(), term.Unanchored(), n, 50+n)
	}
	for i, e := range events {
		if e.Sequence != uint64(51+i) || e.Verify(term.PublicKey()) != nil {
			t.Fatalf("event %d: sequence %d (want %d), verifies %v", i, e.Sequence, 51+i, e.Verify(term.PublicKey()))
		}
		if i == 99 {
			if e.Reason != ReasonEntryDamaged {
				t.Fatalf("sequence 150: %+v, want the stand-in", e.Event)
			}
		} else if e.ID != taps[i].ID {
			t.Fatalf("sequence %d holds event %s, want %s", e.Sequence, e.ID, taps[i].ID)
		}
	}
}

// TestOutboxWithHistoryIsAnchored: an outbox made before this rule (it
// holds events, and neither its signer nor an anchoring mark) is not held
// back when opened.
func TestOutboxWithHistoryIsAnchored(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
		t.Fatal(err)
	}
	if err := term.asBeforeAnchoring(); err != nil {
		t.Fatal(err)
	}
	term.Close()
	term = openTest(t, dir)
	defer term.Close()
	if term.Unanchored() || term.LastSequence() != 1 {
		t.Fatalf("an outbox with a history: unanchored %v, last %d", term.Unanchored(), term.LastSequence())
	}
}
