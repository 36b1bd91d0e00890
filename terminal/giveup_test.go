package terminal

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// tapN takes n taps on term.
func tapN(t *testing.T, term *Terminal, n int) {
	t.Helper()
	for i := range n {
		if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("card-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// damageEntry flips a byte in the middle of entry seq of the closed outbox
// in dir, as a disk may.
func damageEntry(t *testing.T, dir string, seq uint64) {
	t.Helper()
	db, err := badger.Open(storeOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		v, err := readOutboxEntry(txn, seq)
		if err != nil {
			return err
		}
		v[len(v)/2] ^= 0xff
		return txn.Set(outboxKey(seq), v)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// storeFilesNow is every file in dir, by name, as its contents' hash.
func storeFilesNow(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = sha256.Sum256(b)
	}
	return out
}

// TestGiveUpDamagedChecks: give-up refuses, leaving the store as it is, a
// sequence 0, an operator or stop other than the gate's (an outside test
// saw a stand-in naming another operator signed: clearing drops such an
// event without using up its sequence, so the gap never closed), another
// id, a whole entry, one not pending, and a gate that is running. Without
// --operator and --stop the stand-in names those the gate last ran with;
// the damaged bytes are saved in --data.
func TestGiveUpDamagedChecks(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	term := openTest(t, dir) // operator metro, stop S1
	tapN(t, term, 5)
	term.Close()
	damageEntry(t, outbox, 3)
	cfg := testConfig(t, dir, outbox)
	before := storeFilesNow(t, outbox)
	for _, tt := range []struct {
		name string
		seq  uint64
		edit func(*Config)
		want string
	}{
		{"sequence 0", 0, nil, "sequence 0"},
		{"another operator", 3, func(c *Config) { c.Operator = "bus" }, "runs as operator metro at stop S1"},
		{"another stop", 3, func(c *Config) { c.Stop = "NOWHERE" }, "runs as operator metro at stop S1"},
		{"an operator id with a dot", 3, func(c *Config) { c.Operator = "me.tro" }, `operator id "me.tro"`},
		{"another id", 3, func(c *Config) { c.ID = "t2" }, "not t2"},
		{"a whole entry", 2, nil, "it is whole"},
		{"a sequence not pending", 9, nil, "not pending"},
	} {
		c := cfg
		if tt.edit != nil {
			tt.edit(&c)
		}
		if _, _, err := GiveUpDamaged(c, tt.seq); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.want)
		}
		if now := storeFilesNow(t, outbox); !maps.Equal(now, before) {
			t.Fatalf("%s: the store changed", tt.name)
		}
	}

	running, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := GiveUpDamaged(cfg, 3); err == nil || !strings.Contains(err.Error(), "stop the terminal first") {
		t.Errorf("the gate running: %v, want it refused", err)
	}
	running.Close()

	c := cfg
	c.Operator, c.Stop = "", ""
	ev, saved, err := GiveUpDamaged(c, 3)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Operator != "metro" || ev.Stop != "S1" || saved != filepath.Join(outbox, "damaged-entry-3") {
		t.Errorf("stand-in for operator %s at stop %s, damaged bytes in %s; want metro, S1, %s", ev.Operator, ev.Stop, saved, filepath.Join(outbox, "damaged-entry-3"))
	}
	// Given up twice: said so, not called whole (an outside test).
	if _, _, err := GiveUpDamaged(c, 3); err == nil || !strings.Contains(err.Error(), "given up already") {
		t.Errorf("giving entry 3 up twice: %v, want it named given up already", err)
	}
	term, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	raw, err := term.outboxEntry(3)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := term.ownEvent(raw); err != nil || !standIn(&got.Event) || got.Sequence != 3 {
		t.Fatalf("entry 3 after give-up: %+v, %v; want the stand-in, verified", got, err)
	}
}

// TestGiveUpDamagedOlderOutbox: an outbox from before the gate recorded its
// operator and stop gives the stand-in those of its newest whole entry; one
// that holds no whole entry takes them as given, and needs them.
func TestGiveUpDamagedOlderOutbox(t *testing.T) {
	dropIdentity := func(dir string) {
		t.Helper()
		db, err := badger.Open(storeOptions(dir))
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(txn *badger.Txn) error {
			if err := txn.Delete(keyOperator); err != nil {
				return err
			}
			return txn.Delete(keyStop)
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name           string
		taps           uint64
		operator, stop string
		want           string // error, or operator/stop of the stand-in
	}{
		{"whole entries there, none given", 3, "", "", "metro/S1"},
		{"whole entries there, others given", 3, "bus", "S1", "runs as operator metro at stop S1"},
		{"no whole entry, none given", 1, "", "", "give the gate's own --operator and --stop"},
		{"no whole entry, given", 1, "metro", "S1", "metro/S1"},
	} {
		dir := t.TempDir()
		outbox := filepath.Join(dir, "outbox")
		term := openTest(t, dir)
		tapN(t, term, int(tt.taps))
		term.Close()
		dropIdentity(outbox)
		damageEntry(t, outbox, 1)
		cfg := testConfig(t, dir, outbox)
		cfg.Operator, cfg.Stop = tt.operator, tt.stop
		ev, _, err := GiveUpDamaged(cfg, 1)
		got := ev.Operator + "/" + ev.Stop
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestGiveUpRefusesUncleanStore: a store not closed cleanly (a crash) is
// refused and left byte for byte as it was: Badger's open would repair it
// without the copy and the check for lost taps the gate's own start makes
// (an outside test saw a torn write-ahead log truncated by give-up, two
// accepted taps lost and no copy kept). Once the gate has started and
// stopped, the entry is given up.
func TestGiveUpRefusesUncleanStore(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	term := openTest(t, dir)
	tapN(t, term, 5)
	term.Close()
	damageEntry(t, outbox, 3)
	term = openTest(t, dir)
	tapN(t, term, 3)
	crashed := filepath.Join(t.TempDir(), "outbox")
	if err := os.CopyFS(crashed, os.DirFS(outbox)); err != nil { // the files as a crash leaves them
		t.Fatal(err)
	}
	term.Close()
	cfg := testConfig(t, dir, crashed)
	before := storeFilesNow(t, crashed)
	if _, _, err := GiveUpDamaged(cfg, 3); !errors.Is(err, ErrStoreUnclean) || !strings.Contains(err.Error(), "start the terminal once") {
		t.Fatalf("a crashed store: %v, want ErrStoreUnclean saying what to do", err)
	}
	if now := storeFilesNow(t, crashed); !maps.Equal(now, before) {
		t.Fatal("a crashed store was changed by a give-up it refused")
	}
	term, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if term.LastSequence() != 8 {
		t.Errorf("the gate's start: last sequence %d, want 8", term.LastSequence())
	}
	term.Close()
	if _, _, err := GiveUpDamaged(cfg, 3); err != nil {
		t.Fatalf("after the gate's start and stop: %v", err)
	}
}
