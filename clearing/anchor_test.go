package clearing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// TestReplacedGateContinuesItsSequence: a gate unit is replaced (its
// outbox lost, the same registered key provisioned on a new one), and the
// new unit takes taps before it first reaches NATS. It publishes nothing
// until clearing has told it, in a signed confirmation, how far its
// record of the terminal goes; then its taps are renumbered after it and
// applied, none refused as a replay of the old unit's sequences.
func TestReplacedGateContinuesItsSequence(t *testing.T) {
	dir, reg, keys, cl := startCity(t, 1)
	url := cl.NATSURL()

	old := startTerminal(t, dir, url, reg, keys, "t1")
	for i := range 5 {
		tap(t, old.Terminal, fmt.Sprintf("card-%d", i), fare.Validate)
	}
	waitFor(t, "the old unit's taps confirmed", 20*time.Second, func() bool { return old.Pending() == 0 && !old.Unanchored() })
	old.stop(t)

	rt, _ := reg.TerminalKey("t1")
	unit, err := terminal.Open(terminal.Config{ID: "t1", Operator: rt.Operator, Stop: rt.Stop, Key: keys["t1"],
		DataDir: filepath.Join(dir, "replacement"), NATSURL: url, ResendAfter: 500 * time.Millisecond, Logger: quietLogger(),
		ClearingKeys: []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	defer unit.Close()
	for i := range 3 {
		if ev := tap(t, unit, fmt.Sprintf("new-card-%d", i), fare.Validate); ev.Sequence != uint64(i+1) {
			t.Fatalf("tap %d on the new unit before it reached clearing: sequence %d", i, ev.Sequence)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- unit.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "the new unit's taps confirmed", 20*time.Second, func() bool { return !unit.Unanchored() && unit.Pending() == 0 })
	st := cl.Stats()
	if st.Applied != 8 || st.Quarantined != 0 || unit.LastSequence() != 8 || unit.RejectedEvents() != 0 {
		t.Fatalf("applied %d, quarantined %d (%v); new unit's last sequence %d, rejected %d: want 8 applied, none refused, sequence 8",
			st.Applied, st.Quarantined, st.QuarantineByWhy, unit.LastSequence(), unit.RejectedEvents())
	}
	if ev := tap(t, unit, "after", fare.Validate); ev.Sequence != 9 {
		t.Fatalf("the next tap: sequence %d, want 9", ev.Sequence)
	}
}

// TestCorruptOutboxEntryNotSent: an outbox entry the disk damaged (a
// flipped byte of its token) no longer verifies with the terminal's own
// key: the terminal names and counts it and does not send it, so clearing
// quarantines no forgery; the entries after it are applied, and the gap at
// its sequence stays, which clearing reports, until the entry is given up
// (terminal.GiveUpDamaged): a denied tap signed in its place closes it.
func TestCorruptOutboxEntryNotSent(t *testing.T) {
	// One tap confirmed; then offline: three taps, the middle one's bytes
	// then damaged on disk.
	dir, reg, keys, cl, outbox := cityWithOfflineTaps(t)
	damageEntry(t, outbox, 3, "card-2") // card-9: still an event, no longer the one signed

	again := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	waitFor(t, "the entries either side of the damaged one applied", 20*time.Second, func() bool { return cl.Stats().Applied == 3 })
	waitFor(t, "the damaged entry named", 10*time.Second, func() bool { return again.CorruptEntries() > 0 })
	time.Sleep(time.Second) // resend rounds pass over it again
	st := cl.Stats()
	if st.Applied != 3 || st.Quarantined != 0 || again.Confirmed() != 2 || again.Pending() != 2 {
		t.Fatalf("applied %d, quarantined %d; terminal confirmed %d, pending %d; want 3, 0, 2, 2", st.Applied, st.Quarantined, again.Confirmed(), again.Pending())
	}
	again.stop(t)

	// The entry given up (faregate terminal give-up, the gate stopped): a
	// denied tap of its reason under its sequence, the damaged bytes saved
	// in --data. The gap closes and the outbox drains. A whole
	// entry, one confirmed, another key are refused.
	rt, _ := reg.TerminalKey("t1")
	cfg := terminal.Config{ID: "t1", Operator: rt.Operator, Stop: rt.Stop, Key: keys["t1"], DataDir: outbox}
	for _, bad := range []struct {
		seq  uint64
		key  ed25519.PrivateKey
		want string
	}{
		{4, keys["t1"], "it is whole"},
		{2, keys["t1"], "not pending"},
		{3, ed25519.NewKeyFromSeed(make([]byte, 32)), "not this --key's"},
	} {
		c := cfg
		c.Key = bad.key
		if _, _, err := terminal.GiveUpDamaged(c, bad.seq); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("giving up entry %d: %v, want an error saying %q", bad.seq, err, bad.want)
		}
	}
	ev, saved, err := terminal.GiveUpDamaged(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(saved); err != nil || !bytes.Contains(b, []byte("card-9")) {
		t.Fatalf("the damaged entry saved at %s: %v (%d bytes), want its bytes", saved, err, len(b))
	}
	again = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer again.stop(t)
	waitFor(t, "the outbox drained past the entry given up", 20*time.Second, func() bool { return again.Pending() == 0 })
	rec, err := cl.Store().Event(ev.ID)
	if err != nil {
		t.Fatalf("the tap signed in the damaged entry's place: %v", err)
	}
	if got, err := fare.Decode(rec.Raw); err != nil || got.Decision != fare.Denied || got.Reason != terminal.ReasonEntryDamaged || got.Sequence != 3 || rec.Fare != 0 {
		t.Fatalf("recorded %+v (%v), fare %d; want a denied tap of reason %s at sequence 3, charging nothing", got, err, rec.Fare, terminal.ReasonEntryDamaged)
	}
	if st := cl.Stats(); st.Applied != 4 || st.Quarantined != 0 || cl.TerminalWatermark("t1") != 4 {
		t.Fatalf("applied %d, quarantined %d, watermark %d; want 4, 0, 4", st.Applied, st.Quarantined, cl.TerminalWatermark("t1"))
	}
}

// damageEntry changes, in the closed outbox in dir, the last character of
// token in entry seq to '9', as a flipped bit on disk would: the entry still
// decodes, and no longer verifies.
func damageEntry(t *testing.T, dir string, seq uint64, token string) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	key := binary.BigEndian.AppendUint64([]byte{'o'}, seq)
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		i := bytes.Index(v, []byte(token))
		if i < 0 {
			return fmt.Errorf("%s not in entry %d", token, seq)
		}
		v[i+len(token)-1] = '9'
		return txn.Set(key, v)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestGivenUpEntryClearingHeld: an entry the disk damaged after clearing
// had applied it, its confirmation not yet received (the gate stopped
// first), and then given up. Clearing holding the tap is the good
// outcome: the gate drops the denied tap signed in its place once clearing
// shows it holds another event under that sequence, without signing it
// again under a new sequence or raising the alarm of a second unit
// signing with its key; clearing quarantines nothing.
func TestGivenUpEntryClearingHeld(t *testing.T) {
	// One tap confirmed; then offline: three taps; the outbox as it is then
	// is kept, to be put back once clearing has applied them: as a gate
	// stopped before their confirmation came leaves it.
	dir, reg, keys, cl, outbox := cityWithOfflineTaps(t)
	unconfirmed := filepath.Join(t.TempDir(), "outbox")
	if err := os.CopyFS(unconfirmed, os.DirFS(outbox)); err != nil {
		t.Fatal(err)
	}
	sent := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	waitFor(t, "the three taps applied and confirmed", 20*time.Second, func() bool { return sent.Pending() == 0 })
	sent.stop(t)
	if err := os.RemoveAll(outbox); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(outbox, os.DirFS(unconfirmed)); err != nil {
		t.Fatal(err)
	}
	damageEntry(t, outbox, 3, "card-2")
	ev, _, err := terminal.GiveUpDamaged(terminal.Config{ID: "t1", Key: keys["t1"], DataDir: outbox}, 3)
	if err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	again := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	defer again.stop(t)
	waitFor(t, "the outbox drained", 20*time.Second, func() bool { return again.Pending() == 0 })
	time.Sleep(time.Second) // a resend round, were anything left
	st := cl.Stats()
	if st.Applied != 4 || st.Quarantined != 0 || again.Renumbered() != 0 || again.LastSequence() != 4 || again.RejectedEvents() != 0 {
		t.Errorf("applied %d, quarantined %d (%v); gate renumbered %d, last sequence %d, rejected %d: want 4, 0, 0, 4, 0",
			st.Applied, st.Quarantined, st.QuarantineByWhy, again.Renumbered(), again.LastSequence(), again.RejectedEvents())
	}
	if _, err := cl.Store().Event(ev.ID); err == nil {
		t.Errorf("the denied tap given up in place of a tap clearing holds was applied too")
	}
	if strings.Contains(logs.String(), "second unit") || strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the gate's log:\n%s\nwant no alarm", logs.String())
	}
}

// TestRefusedTerminalSaysWhy: a terminal whose NATS user the server
// refuses (a key the registry does not hold for its id: a mistyped --id,
// a revoked or replaced unit) says so in its log, naming its user and what
// to check, instead of taking taps in silence.
func TestRefusedTerminalSaysWhy(t *testing.T) {
	dir, reg, keys, cl := startCity(t, 1)
	_, stranger, _ := ed25519.GenerateKey(nil)
	var logs syncBuffer
	term := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.Key = stranger
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	defer term.stop(t)
	tap(t, term.Terminal, "card-0", fare.Validate)
	waitFor(t, "the refusal logged", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "the server refuses NATS user "+term.NATSUser())
	})
	if !strings.Contains(logs.String(), "is terminal t1 registered") {
		t.Fatalf("the log does not say what to check:\n%s", logs.String())
	}
}

// TestRevokedRunningTerminalSaysWhy: a gate whose key its operator revokes
// while it runs is cut off by NATS; its log says which user was refused and
// what to check, not only the server's "Authorization Violation".
func TestRevokedRunningTerminalSaysWhy(t *testing.T) {
	ctx, keys, _, cl, metro := chainCity(t)
	reg, _ := testRegistry(2)
	var logs syncBuffer
	term := startTerminalWith(t, t.TempDir(), cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	defer term.stop(t)
	tap(t, term.Terminal, "card-0", fare.Validate)
	waitFor(t, "the tap confirmed", 10*time.Second, func() bool { return term.Confirmed() == 1 })
	if _, err := metro.RevokeTerminal(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revocation explained", 15*time.Second, func() bool {
		return strings.Contains(logs.String(), "the server refuses NATS user "+term.NATSUser())
	})
	tap(t, term.Terminal, "card-1", fare.Validate)
	time.Sleep(time.Second) // a resend round
	if term.Pending() != 1 {
		t.Fatalf("%d taps pending after the revocation, want the one taken since (kept in the outbox)", term.Pending())
	}
}

// cityWithOfflineTaps starts a city of one terminal t1 whose tap card-0
// clearing confirms, then takes three taps offline (tapOffline), and
// returns the city and t1's outbox.
func cityWithOfflineTaps(t *testing.T) (dir string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, cl *running, outbox string) {
	t.Helper()
	dir, reg, keys, cl = startCity(t, 1)
	first := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	tap(t, first.Terminal, "card-0", fare.Validate)
	waitFor(t, "the first tap confirmed", 20*time.Second, func() bool { return first.Pending() == 0 && !first.Unanchored() })
	first.stop(t)
	return dir, reg, keys, cl, tapOffline(t, dir, reg, keys, "t1", 3)
}

// tapOffline takes taps card-1 to card-n at terminal id, its NATS
// unreachable, on the outbox it keeps under dir, and returns the outbox.
func tapOffline(t *testing.T, dir string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, id string, n int) string {
	t.Helper()
	rt, _ := reg.TerminalKey(id)
	outbox := filepath.Join(dir, "terminal-"+id)
	offline, err := terminal.Open(terminal.Config{ID: id, Operator: rt.Operator, Stop: rt.Stop, Key: keys[id], DataDir: outbox,
		NATSURL: "nats://127.0.0.1:1", Logger: quietLogger(), ClearingKeys: []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		tap(t, offline, fmt.Sprintf("card-%d", i), fare.Validate)
	}
	offline.Close()
	return outbox
}
