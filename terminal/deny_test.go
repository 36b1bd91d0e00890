package terminal

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/gatefeed"
)

// kvEntry is a value as a gate feed delivers it.
type kvEntry = *gatefeed.Entry

// TestGateListCopy drives the gate-list follower without NATS: entries
// newer than the copy's apply (and are stored), repeats are quiet, older
// entries are stale, anything a stranger signed, another list's or another
// key's entry, deletions and garbage are refused and counted; a head older
// than the copy's is refused; a bucket read whole under a head drops what it
// no longer holds; the enrolment copy gives a tap's category; a restart
// reloads everything (no NATS needed to decide).
func TestGateListCopy(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	f := &gateFollower{t: term}
	deny := &listSession{list: fare.DenyGateList, seen: map[fare.DenyHash]struct{}{}}
	enrol := &listSession{list: fare.EnrolGateList, seen: map[fare.DenyHash]struct{}{}}
	sign := func(e fare.GateEntry, key ed25519.PrivateKey) kvEntry {
		b, err := e.Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		return &gatefeed.Entry{Key: e.Key.String(), Value: b}
	}
	head := func(h fare.GateHead, key ed25519.PrivateKey) kvEntry {
		b, err := h.Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		return &gatefeed.Entry{Key: fare.GateHeadKey, Value: b}
	}
	decision := func(m fare.MediaKind, token string) string {
		t.Helper()
		if m == fare.Face { // as if the camera had identified token
			d, why := term.Decide(Tap{Gate: "g1", Direction: fare.Entry, Media: m, Token: token})
			return d.String() + "/" + why + "/" + term.Category(m, token, time.Now())
		}
		ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Entry, Media: m, Token: token, RiderCategory: "concession"})
		if err != nil {
			t.Fatal(err)
		}
		return ev.Decision.String() + "/" + ev.Reason + "/" + ev.RiderCategory
	}
	_, stranger, _ := ed25519.GenerateKey(nil)
	face, card := fare.HashDeny(fare.Face, "subject-9"), fare.HashDeny(fare.Card, "card-2")
	now := time.Now().UTC().Truncate(time.Second)
	period := []fare.EnrolmentPeriod{{From: now.Add(-time.Hour), Until: now.Add(time.Hour), Category: "concession"}}
	conf, _ := (&fare.Confirmation{Terminal: "t1", IssuedAt: time.Now()}).Sign(testClearingKey)
	moved := sign(fare.GateEntry{List: fare.DenyGateList, Version: 9, Key: face, Listed: true}, testClearingKey)
	moved.Key = card.String()
	for _, tc := range []struct {
		name    string
		s       *listSession
		entry   kvEntry
		refused string
	}{
		{"a listing", deny, sign(fare.GateEntry{List: fare.DenyGateList, Version: 1, Key: face, Listed: true}, testClearingKey), ""},
		{"its repeat", deny, sign(fare.GateEntry{List: fare.DenyGateList, Version: 1, Key: face, Listed: true}, testClearingKey), ""},
		{"a stranger's entry", deny, sign(fare.GateEntry{List: fare.DenyGateList, Version: 2, Key: card, Listed: true}, stranger), DenyRefusedUntrusted},
		{"a confirmation", deny, &gatefeed.Entry{Key: card.String(), Value: conf}, DenyRefusedMalformed},
		{"garbage", deny, &gatefeed.Entry{Key: card.String(), Value: []byte(`{"stream":"EVENTS","seq":1}`)}, DenyRefusedMalformed},
		{"a deletion", deny, &gatefeed.Entry{Key: face.String(), Op: "DEL"}, DenyRefusedMalformed},
		{"another medium's entry", deny, moved, DenyRefusedMalformed},
		{"an enrolment in the deny bucket", deny, sign(fare.GateEntry{List: fare.EnrolGateList, Version: 3, Key: card, Periods: period}, testClearingKey), DenyRefusedMalformed},
		{"a listing of card-2", deny, sign(fare.GateEntry{List: fare.DenyGateList, Version: 4, Key: card, Listed: true}, testClearingKey), ""},
		{"an older unlisting of card-2 (replayed)", deny, sign(fare.GateEntry{List: fare.DenyGateList, Version: 3, Key: card}, testClearingKey), DenyRefusedStale},
		{"the deny head", deny, head(fare.GateHead{List: fare.DenyGateList, Version: 4, Count: 2, Digest: fare.DigestDenyList([]fare.DenyHash{face, card})}, testClearingKey), ""},
		{"an older head", deny, head(fare.GateHead{List: fare.DenyGateList, Version: 3, Count: 1}, testClearingKey), DenyRefusedOlder},
		{"a stranger's head", deny, head(fare.GateHead{List: fare.DenyGateList, Version: 9}, stranger), DenyRefusedUntrusted},
		{"an enrolment", enrol, sign(fare.GateEntry{List: fare.EnrolGateList, Version: 1, Key: card, Periods: period}, testClearingKey), ""},
		{"the enrolments head", enrol, head(fare.GateHead{List: fare.EnrolGateList, Version: 1, Count: 1}, testClearingKey), ""},
	} {
		before := term.DenyRefusals()
		f.apply(tc.s, tc.entry)
		after := term.DenyRefusals()
		for _, r := range denyRefusalReasons {
			want := before[r]
			if r == tc.refused {
				want++
			}
			if after[r] != want {
				t.Errorf("%s: %s refusals %d, want %d", tc.name, r, after[r], want)
			}
		}
	}
	if err := f.flush(); err != nil {
		t.Fatal(err)
	}
	if v, n := term.DenyListVersion(); v != 4 || n != 2 {
		t.Fatalf("deny copy at version %d with %d listed", v, n)
	}
	if v, n := term.EnrolmentVersion(); v != 1 || n != 1 {
		t.Fatalf("enrolments copy at version %d with %d", v, n)
	}
	for tok, want := range map[string]string{"card-2": "denied/deny-list/concession", "card-3": "accepted/card/", "stolen": "denied/deny-list/"} {
		if got := decision(fare.Card, tok); got != want {
			t.Errorf("card %s: %s, want %s (the claimed category never counts)", tok, got, want)
		}
	}
	if got := decision(fare.Face, "subject-9"); got != "denied/deny-list/" {
		t.Errorf("face subject-9: %s", got)
	}
	// Listed riders already inside are let out.
	for _, m := range []fare.MediaKind{fare.Card, fare.Face} {
		tok := map[fare.MediaKind]string{fare.Card: "card-2", fare.Face: "subject-9"}[m]
		if d, why := term.Decide(Tap{Gate: "g1", Direction: fare.Exit, Media: m, Token: tok}); d != fare.Accepted || why != ExitWhileListed {
			t.Errorf("exit of listed %s %s: %s/%s, want accepted/%s", m, tok, d, why, ExitWhileListed)
		}
	}
	if c := term.Category(fare.Card, "card-2", now.Add(2*time.Hour)); c != "" {
		t.Errorf("after the enrolment's period: %q", c)
	}
	// Unlisted by a newer entry: accepted again.
	f.apply(deny, sign(fare.GateEntry{List: fare.DenyGateList, Version: 5, Key: card}, testClearingKey))
	if got := decision(fare.Card, "card-2"); got != "accepted/card/concession" {
		t.Errorf("card-2 unlisted: %s", got)
	}

	// A fresh watch (after a reconnect) reads a bucket that holds the face
	// and card-2's tombstone, and card-7 the copy never had; under a head
	// newer than the copy's, nothing else stays.
	gone := fare.HashDeny(fare.Card, "gone")
	f.apply(deny, sign(fare.GateEntry{List: fare.DenyGateList, Version: 6, Key: gone, Listed: true}, testClearingKey))
	fresh := &listSession{list: fare.DenyGateList, seen: map[fare.DenyHash]struct{}{}}
	f.apply(fresh, sign(fare.GateEntry{List: fare.DenyGateList, Version: 1, Key: face, Listed: true}, testClearingKey))
	f.apply(fresh, sign(fare.GateEntry{List: fare.DenyGateList, Version: 5, Key: card}, testClearingKey))
	seven := fare.HashDeny(fare.Card, "card-7")
	f.apply(fresh, sign(fare.GateEntry{List: fare.DenyGateList, Version: 7, Key: seven, Listed: true}, testClearingKey))
	f.apply(fresh, head(fare.GateHead{List: fare.DenyGateList, Version: 7, Count: 2, Digest: fare.DigestDenyList([]fare.DenyHash{face, seven})}, testClearingKey))
	if got := decision(fare.Card, "gone"); got != "denied/deny-list/" {
		t.Fatalf("dropped before the bucket was read whole: %s", got)
	}
	f.apply(fresh, nil)
	if err := f.flush(); err != nil {
		t.Fatal(err)
	}
	if got := decision(fare.Card, "gone"); got != "accepted/card/" {
		t.Errorf("a medium the bucket no longer holds: %s", got)
	}
	if v, n := term.DenyListVersion(); v != 7 || n != 2 {
		t.Fatalf("after the fresh watch: version %d, %d listed", v, n)
	}

	// A big copy in chunks; a restart reloads versions, tombstones and
	// enrolments.
	big := &listSession{list: fare.DenyGateList, seen: map[fare.DenyHash]struct{}{}}
	for i := range 2*gateChunk + 17 {
		f.apply(big, sign(fare.GateEntry{List: fare.DenyGateList, Version: uint64(10 + i), Key: fare.HashDeny(fare.Card, fmt.Sprintf("big-%d", i)), Listed: true}, testClearingKey))
	}
	if err := f.flush(); err != nil {
		t.Fatal(err)
	}
	term.Close()
	term = openTest(t, dir)
	defer term.Close()
	f = &gateFollower{t: term}
	if v, n := term.DenyListVersion(); v != 7 || n != 2+2*gateChunk+17 {
		t.Fatalf("after a restart: version %d, %d listed", v, n)
	}
	if got := decision(fare.Card, "big-7"); got != "denied/deny-list/" {
		t.Fatalf("the reloaded copy: big-7 %s", got)
	}
	if got := decision(fare.Card, "card-2"); got != "accepted/card/concession" {
		t.Fatalf("the reloaded copy: card-2 %s", got)
	}
	before := term.DenyRefusals()[DenyRefusedStale]
	f.apply(deny, sign(fare.GateEntry{List: fare.DenyGateList, Version: 4, Key: card, Listed: true}, testClearingKey))
	if term.DenyRefusals()[DenyRefusedStale] != before+1 {
		t.Fatal("after a restart, a replayed older listing was not refused")
	}
}
