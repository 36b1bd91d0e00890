package terminal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

// TestDenyUpdates drives the deny-list follower's update path without NATS:
// the next version applies (and is stored), the repeat of the current one is
// quiet, older ones are stale, a gap or a digest that does not follow asks
// for a sync, and nothing a stranger signed or that is not an update counts.
func TestDenyUpdates(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	f := &denyFollower{t: term}
	sign := func(u fare.DenyUpdate, key ed25519.PrivateKey) []byte {
		b, err := u.Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	decision := func(m fare.MediaKind, token string) string {
		t.Helper()
		ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Entry, Media: m, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return ev.Decision.String() + "/" + ev.Reason
	}

	// The copy starts empty at version 0: update 1 applies.
	u1 := fare.DenyUpdate{Version: 1, Listed: true, Key: fare.HashDeny(fare.Face, "subject-9")}
	u1.Digest.Toggle(u1.Key)
	if f.update(sign(u1, testClearingKey)) {
		t.Fatal("update 1 on an empty copy asked for a sync")
	}
	if v, n := term.DenyListVersion(); v != 1 || n != 1 || decision(fare.Face, "subject-9") != "denied/deny-list" {
		t.Fatalf("after update 1: version %d, %d entries", v, n)
	}
	_, stranger, _ := ed25519.GenerateKey(nil)
	u2 := fare.DenyUpdate{Version: 2, Digest: u1.Digest, Listed: true, Key: fare.HashDeny(fare.Card, "card-2")}
	u2.Digest.Toggle(u2.Key)
	for _, tc := range []struct {
		name    string
		msg     []byte
		sync    bool
		refused uint64
	}{
		{"repeat of the current version", sign(u1, testClearingKey), false, 0},
		{"a stranger's update", sign(u2, stranger), false, 1},
		{"a confirmation", func() []byte {
			b, _ := (&fare.Confirmation{Terminal: "t1", IssuedAt: time.Now()}).Sign(testClearingKey)
			return b
		}(), false, 1},
		{"garbage", []byte("faregate"), false, 1},
		{"a gap", sign(fare.DenyUpdate{Version: 5, Listed: true, Key: u2.Key}, testClearingKey), true, 0},
		{"a digest that does not follow", sign(fare.DenyUpdate{Version: 2, Digest: u1.Digest, Listed: true, Key: u2.Key}, testClearingKey), true, 0},
		{"listing what is listed", sign(fare.DenyUpdate{Version: 2, Digest: u1.Digest, Listed: true, Key: u1.Key}, testClearingKey), true, 0},
		{"the next version", sign(u2, testClearingKey), false, 0},
		{"update 1 replayed", sign(u1, testClearingKey), false, 1},
	} {
		before := term.RefusedDenyMessages()
		if got := f.update(tc.msg); got != tc.sync {
			t.Errorf("%s: sync needed %v, want %v", tc.name, got, tc.sync)
		}
		if got := term.RefusedDenyMessages() - before; got != tc.refused {
			t.Errorf("%s: %d refused, want %d", tc.name, got, tc.refused)
		}
	}
	if v, n := term.DenyListVersion(); v != 2 || n != 2 || decision(fare.Card, "card-2") != "denied/deny-list" || decision(fare.Card, "card-3") != "accepted/card" {
		t.Fatalf("after update 2: version %d, %d entries", v, n)
	}
	// Unlisting: the card is accepted again.
	u3 := fare.DenyUpdate{Version: 3, Digest: u2.Digest, Listed: false, Key: u2.Key}
	u3.Digest.Toggle(u3.Key)
	if f.update(sign(u3, testClearingKey)) || decision(fare.Card, "card-2") != "accepted/card" {
		t.Fatal("update 3 (unlisting card-2) not applied")
	}
	// The static seed still refuses its cards.
	if decision(fare.Card, "stolen") != "denied/deny-list" {
		t.Fatal("static seed no longer refuses")
	}

	// A big copy replaced in chunks; a restart loads it with its version
	// and digest (no NATS needed to decide).
	keys := make([]fare.DenyHash, 2*denyChunk+17)
	for i := range keys {
		keys[i] = fare.HashDeny(fare.Card, fmt.Sprintf("big-%d", i))
	}
	slices.SortFunc(keys, func(a, b fare.DenyHash) int { return bytes.Compare(a[:], b[:]) })
	if err := f.replace(keys, 9000, fare.DigestDenyList(keys)); err != nil {
		t.Fatal(err)
	}
	term.Close()
	term = openTest(t, dir)
	defer term.Close()
	if v, n := term.DenyListVersion(); v != 9000 || n != len(keys) || term.deny.digest != fare.DigestDenyList(keys) {
		t.Fatalf("after a restart: version %d, %d entries, digest %s", v, n, term.deny.digest)
	}
	if decision(fare.Card, "big-7") != "denied/deny-list" || decision(fare.Face, "subject-9") != "accepted/face" {
		t.Fatal("the reloaded copy decides wrongly")
	}
}
