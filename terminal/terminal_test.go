package terminal

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"github.com/dgraph-io/badger/v4"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

var testClearingKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

func openTest(t *testing.T, dir string) *Terminal {
	t.Helper()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	term, err := Open(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"),
		NATSURL: "nats://127.0.0.1:1", Deny: TokenSet{"stolen": {}}, ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	return term
}

func TestTapDecisions(t *testing.T) {
	term := openTest(t, t.TempDir())
	defer term.Close()
	tests := []struct {
		dir    fare.Direction
		media  fare.MediaKind
		token  string
		want   fare.Decision
		reason string
	}{
		{fare.Entry, fare.Card, "good-card", fare.Accepted, "card"},
		{fare.Entry, fare.Card, "stolen", fare.Denied, "deny-list"},
		{fare.Validate, fare.Card, "stolen", fare.Denied, "deny-list"},
		// A listed rider inside is let out, and the event says so.
		{fare.Exit, fare.Card, "stolen", fare.Accepted, ExitWhileListed},
		{fare.Entry, fare.Card, "another-card", fare.Accepted, "card"},
	}
	for i, tt := range tests {
		ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: tt.dir, Media: tt.media, Token: tt.token})
		if err != nil {
			t.Fatal(err)
		}
		if ev.Decision != tt.want || ev.Reason != tt.reason || ev.Sequence != uint64(i+1) {
			t.Errorf("%s %s: got %s/%s seq %d, want %s/%s seq %d", tt.media, tt.token, ev.Decision, ev.Reason, ev.Sequence, tt.want, tt.reason, i+1)
		}
	}
	// Bad input is refused with a clear error and uses no sequence.
	if _, err := term.Tap(context.Background(), Tap{Gate: "g.1", Direction: fare.Entry, Media: fare.Card, Token: "x"}); err == nil {
		t.Error("gate id with a dot accepted")
	}
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: ""}); err == nil {
		t.Error("empty token accepted")
	}
	ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Exit, Media: fare.Card, Token: "good-card"})
	if err != nil || ev.Sequence != 6 {
		t.Errorf("after refused taps: seq %d, %v; want 6 (no gap)", ev.Sequence, err)
	}
}

// The outbox is durable: after a restart (no NATS reachable) every event
// is still pending and sequences continue without reuse.
func TestOutboxSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	var events []fare.Event
	for range 10 {
		ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"})
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	pub := term.PublicKey()
	term.Close()
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != ErrClosed {
		t.Errorf("tap after close: %v, want ErrClosed", err)
	}

	term = openTest(t, dir)
	defer term.Close()
	if term.Pending() != 10 || term.LastSequence() != 10 {
		t.Fatalf("after restart: pending %d, last %d; want 10, 10", term.Pending(), term.LastSequence())
	}
	if !term.PublicKey().Equal(pub) {
		t.Fatal("key changed across restart")
	}
	ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"})
	if err != nil || ev.Sequence != 11 {
		t.Fatalf("first tap after restart: seq %d, %v; want 11", ev.Sequence, err)
	}
	// Each stored event is signed by the terminal's key.
	for _, e := range events {
		raw, err := term.outboxEntry(e.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		s, err := fare.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID != e.ID {
			t.Errorf("outbox seq %d holds event %s, want %s", e.Sequence, s.ID, e.ID)
		}
		if err := s.Verify(pub); err != nil {
			t.Error(err)
		}
	}
}

// TestOutboxRefusesAnotherKey: an outbox opened with a key other than
// the one its events were signed with (a mistyped --key made a fresh one)
// is refused, naming both keys; nothing in it changes.
func TestOutboxRefusesAnotherKey(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
		t.Fatal(err)
	}
	pub := term.PublicKey()
	term.Close()
	_, other, _ := ed25519.GenerateKey(nil)
	_, err := Open(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: other, DataDir: filepath.Join(dir, "outbox"),
		NATSURL: "nats://127.0.0.1:1", ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("signed with key 0x%x", []byte(pub))) {
		t.Fatalf("outbox opened with another key: %v", err)
	}
	term = openTest(t, dir) // the right key: as before
	defer term.Close()
	if term.Pending() != 1 || term.LastSequence() != 1 {
		t.Fatalf("after the refusal: pending %d, last %d; want 1, 1", term.Pending(), term.LastSequence())
	}
}

// TestOutboxRefusesAnotherID: an outbox opened under another terminal id (a
// mistyped --id with the right key) is refused, naming the id its events
// carry: taps taken under the wrong id would be sent on this terminal's
// subject naming another, and clearing would quarantine them without using
// up their sequence, a gap that never closes. An outbox from before the
// id was recorded is bound by its newest event's id.
func TestOutboxRefusesAnotherID(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
		t.Fatal(err)
	}
	term.Close()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	open := func(id string) error {
		term, err := Open(Config{ID: id, Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"),
			NATSURL: "nats://127.0.0.1:1", ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
		if err == nil {
			term.Close()
		}
		return err
	}
	if err := open("t2"); err == nil || !strings.Contains(err.Error(), `its events name terminal "t1", not "t2": give --id t1`) {
		t.Fatalf("outbox opened under another id: %v", err)
	}
	// As an outbox from before the record: its pending event names t1.
	if err := dropTerminalIDRecord(filepath.Join(dir, "outbox")); err != nil {
		t.Fatal(err)
	}
	if err := open("t2"); err == nil || !strings.Contains(err.Error(), `name terminal "t1"`) {
		t.Fatalf("an old outbox opened under another id: %v", err)
	}
	if err := open("t1"); err != nil {
		t.Fatalf("the right id: %v", err)
	}
}

// TestOutboxOperator: a gate's operator is its registration's. Started
// under a wrong --operator before clearing applied any of its events (a
// new gate misconfigured; here one whose outbox was moved past clearing's
// record first, as a replaced unit's is: confirmed there without an event
// of its own applied), its taps are signed again naming the right one at
// the next start, keeping sequence, id and time, so that they can be
// applied; once clearing applied one, another operator is refused, naming
// the one its events named (an outside test's one start under a wrong
// --operator left its taps signed for an operator NATS and clearing
// refuse, and the outbox blocked for good; a recheck's replaced unit was
// refused its right operator, its watermark taken for an applied event).
func TestOutboxOperator(t *testing.T) {
	open := asOperator(t, t.TempDir())
	wrong, err := open("bus")
	if err != nil {
		t.Fatal(err)
	}
	if moved, err := wrong.skipPast(4); err != nil || !moved || wrong.Confirmed() != 4 {
		t.Fatalf("moved past clearing's record: %v, %v, confirmed %d", moved, err, wrong.Confirmed())
	}
	var taken []fare.Event
	for i := range 3 {
		ev, err := wrong.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("card-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		taken = append(taken, ev)
	}
	wrong.Close()

	term, err := open("metro")
	if err != nil {
		t.Fatalf("the right operator after a wrong start: %v", err)
	}
	pending := outboxEvents(t, term)
	if len(pending) != 3 {
		t.Fatalf("%d events pending, want 3", len(pending))
	}
	for i, e := range pending {
		if e.Operator != "metro" || e.Sequence != taken[i].Sequence || e.ID != taken[i].ID || !e.DeviceTime.Equal(taken[i].DeviceTime) || e.Verify(term.PublicKey()) != nil {
			t.Fatalf("pending event %d after the right start: %+v; want %+v naming metro, signed", i, e.Event, taken[i])
		}
	}
	// Clearing applies the first: metro it is, and bus is refused.
	raw := pending[0].Raw
	s := &sender{t: term, next: pending[0].Sequence + 1}
	if err := s.confirm(&fare.Confirmation{Terminal: "t1", Watermark: pending[0].Sequence, Digest: fare.EventDigest(raw)}, term.Confirmed(), true); err != nil {
		t.Fatal(err)
	}
	term.Close()
	if again, err := open("bus"); err == nil {
		again.Close()
		t.Fatal("an outbox clearing applied events of opened under another operator")
	} else if !strings.Contains(err.Error(), `clearing applied its events naming operator "metro"`) || !strings.Contains(err.Error(), "give --operator metro") {
		t.Fatalf("another operator after an applied event: %v, want it refused naming metro", err)
	}
	term, err = open("metro")
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if term.Pending() != 2 {
		t.Fatalf("after the refusal: %d pending, want 2", term.Pending())
	}
}

// TestOutboxOperatorAppliedUnheard: taps clearing applied naming the
// right operator, whose confirmation the gate had not heard when it was
// started under a wrong one (and signed them again naming it), are
// recognised when clearing's record of their sequence comes back: its
// digest is theirs signed naming the right operator. They are confirmed,
// not signed again under new sequences (an outside recheck's two applied
// taps were moved and then rejected as event-id-taken), and that operator
// is recorded as the registration's.
func TestOutboxOperatorAppliedUnheard(t *testing.T) {
	for _, older := range []bool{false, true} {
		t.Run(fmt.Sprintf("outbox from an earlier build %v", older), func(t *testing.T) {
			appliedUnheard(t, older)
		})
	}
}

// appliedUnheard is TestOutboxOperatorAppliedUnheard, on an outbox whose
// list of operators run an earlier build did not keep (older): the one it
// last ran with starts the list (an outside re-check).
func appliedUnheard(t *testing.T, older bool) {
	dir := t.TempDir()
	open := asOperator(t, dir)
	right, err := open("metro")
	if err != nil {
		t.Fatal(err)
	}
	tapN(t, right, 2)
	applied := outboxEvents(t, right) // as published, and applied by clearing
	right.Close()
	if older {
		if err := dropOperatorsRunRecord(filepath.Join(dir, "outbox")); err != nil {
			t.Fatal(err)
		}
	}

	wrong, err := open("bus")
	if err != nil {
		t.Fatal(err)
	}
	if e := outboxEvents(t, wrong)[0]; e.Operator != "bus" {
		t.Fatalf("pending under a wrong operator: %+v, want signed again naming bus", e.Event)
	}
	s := &sender{t: wrong, next: 1}
	for _, e := range applied {
		if err := s.conflictAt(e.Sequence, fare.EventDigest(e.Raw)); err != nil {
			t.Fatal(err)
		}
	}
	if wrong.Pending() != 0 || wrong.LastSequence() != 2 || wrong.Confirmed() != 2 || wrong.Renumbered() != 0 {
		t.Fatalf("after clearing's record of its applied taps: pending %d, last %d, confirmed %d, renumbered %d; want 0, 2, 2, 0",
			wrong.Pending(), wrong.LastSequence(), wrong.Confirmed(), wrong.Renumbered())
	}
	wrong.Close()
	if again, err := open("bus"); err == nil {
		again.Close()
		t.Fatal("reopened under the wrong operator after clearing's record named the right one")
	} else if !strings.Contains(err.Error(), `naming operator "metro"`) {
		t.Fatalf("reopened under the wrong operator: %v, want it refused naming metro", err)
	}
}

// asOperator returns a function that opens terminal t1's outbox in dir
// (its key there) as a terminal of the operator given.
func asOperator(t *testing.T, dir string) func(operator string) (*Terminal, error) {
	t.Helper()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	return func(operator string) (*Terminal, error) {
		return Open(Config{ID: "t1", Operator: operator, Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"),
			NATSURL: "nats://127.0.0.1:1", ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	}
}

// outboxEvents reads the outbox's pending events, in sequence order.
func outboxEvents(t *testing.T, term *Terminal) []*fare.Signed {
	t.Helper()
	var out []*fare.Signed
	err := term.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pOutbox}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			raw, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			e, err := fare.Decode(raw)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Concurrent taps share group commits and still get unique, gapless
// sequences.
func TestConcurrentTaps(t *testing.T) {
	term := openTest(t, t.TempDir())
	defer term.Close()
	const n = 400
	seqs := make(chan uint64, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c", Time: time.Now()})
			if err != nil {
				t.Error(err)
				return
			}
			seqs <- ev.Sequence
		}()
	}
	wg.Wait()
	close(seqs)
	seen := make(map[uint64]bool)
	for s := range seqs {
		if seen[s] || s < 1 || s > n {
			t.Fatalf("sequence %d duplicated or out of range", s)
		}
		seen[s] = true
	}
	if len(seen) != n || term.LastSequence() != n {
		t.Fatalf("%d sequences, last %d; want %d", len(seen), term.LastSequence(), n)
	}
}

func TestLoadOrCreateKeyRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("reload gave another key: %v", err)
	}
	if len(k1) != ed25519.PrivateKeySize {
		t.Fatal("bad key size")
	}
	bad := filepath.Join(dir, "bad")
	if err := writeFile(bad, "not hex"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(bad); err == nil {
		t.Error("garbage key file accepted")
	}
}

// TestTapAnswerIsWhatTheOutboxHolds: taps whose caller's deadline ends
// around the outbox's group commit. Each is answered with what the outbox
// holds: one reported taken is in it, one reported failed is not (it used
// to be written and charged while the gate, told "failed", stayed shut).
// Also across Close: a tap answered ErrClosed was not written.
func TestTapAnswerIsWhatTheOutboxHolds(t *testing.T) {
	term := openTest(t, t.TempDir())
	var taken, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(200+i*5)*time.Microsecond)
			defer cancel()
			_, err := term.Tap(ctx, Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: fmt.Sprintf("card-%d", i)})
			switch {
			case err == nil:
				taken.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
				failed.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := term.LastSequence(); got != uint64(taken.Load()) {
		t.Fatalf("%d events in the outbox, %d taps answered taken (%d answered failed)", got, taken.Load(), failed.Load())
	}
	t.Logf("%d taken, %d failed by their deadline", taken.Load(), failed.Load())

	// Taps racing Close: the answered ones are exactly the ones written.
	var closedTaken atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: fmt.Sprintf("late-%d", i)}); err == nil {
				closedTaken.Add(1)
			} else if !errors.Is(err, ErrClosed) {
				t.Error(err)
			}
		}()
	}
	term.Close()
	wg.Wait()
	if got, want := term.LastSequence(), uint64(taken.Load()+closedTaken.Load()); got != want {
		t.Fatalf("after Close: %d events in the outbox, %d taps answered taken", got, want)
	}
}
