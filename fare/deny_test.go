package fare

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"
)

func testDenyKeys(n int) []DenyHash {
	keys := make([]DenyHash, n)
	for i := range keys {
		keys[i] = HashDeny(Card, fmt.Sprintf("card-%d", i))
	}
	slices.SortFunc(keys, func(a, b DenyHash) int { return bytes.Compare(a[:], b[:]) })
	return keys
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestDenyKey(t *testing.T) {
	k := DenyKey(Card, "tok-1")
	if len(k) != 34 || k[:2] != "0x" || k == DenyKey(Face, "tok-1") || k == DenyKey(Card, "tok-2") || k != DenyKey(Card, "tok-1") {
		t.Fatalf("deny keys: %s", k)
	}
	parsed, err := ParseDenyKey(k)
	if err != nil || parsed != HashDeny(Card, "tok-1") {
		t.Fatalf("parse %s: %v", k, err)
	}
	if bare, err := ParseDenyKey(k[2:]); err != nil || bare != parsed || HashDeny(Card, "tok-1").String() != k[2:] {
		t.Fatalf("the bucket form %s: %v", k[2:], err)
	}
	for _, bad := range []string{"", k[:33], k + "0", "0xzz" + k[4:], "0x0x" + k[2:]} {
		if _, err := ParseDenyKey(bad); err == nil {
			t.Errorf("ParseDenyKey(%q) accepted", bad)
		}
	}
}

func TestDenyDigest(t *testing.T) {
	keys := testDenyKeys(5)
	d := DigestDenyList(keys)
	rev := slices.Clone(keys)
	slices.Reverse(rev)
	if DigestDenyList(rev) != d {
		t.Fatal("digest depends on the order")
	}
	e := DigestDenyList(keys[:4])
	e.Toggle(keys[4])
	if e != d {
		t.Fatal("toggling a key in differs from the list's digest")
	}
	e.Toggle(keys[4])
	if e != DigestDenyList(keys[:4]) || e == d {
		t.Fatal("toggling a key out does not undo it")
	}
	if DigestDenyList(nil) != (DenyDigest{}) {
		t.Fatal("empty list's digest is not zero")
	}
}

// TestEnrolEntrySum: an enrolment entry's share of the digest changes with
// its key, its version and each field of its periods, as a signed entry
// encodes them (Unix seconds: a sub-second difference is the same entry),
// and a share toggled in and out leaves the digest as it was.
func TestEnrolEntrySum(t *testing.T) {
	k := testDenyKeys(2)
	at := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	p := []EnrolmentPeriod{{From: at, Until: at.Add(48 * time.Hour), Category: "concession"}}
	base := EnrolEntrySum(k[0], 3, p)
	for _, c := range []struct {
		name    string
		key     DenyHash
		version uint64
		periods []EnrolmentPeriod
		same    bool
	}{
		{"another key", k[1], 3, p, false},
		{"another version", k[0], 4, p, false},
		{"no periods", k[0], 3, nil, false},
		{"ends sooner", k[0], 3, []EnrolmentPeriod{{From: at, Until: at.Add(24 * time.Hour), Category: "concession"}}, false},
		{"starts later", k[0], 3, []EnrolmentPeriod{{From: at.Add(time.Second), Until: at.Add(48 * time.Hour), Category: "concession"}}, false},
		{"another category", k[0], 3, []EnrolmentPeriod{{From: at, Until: at.Add(48 * time.Hour), Category: "student"}}, false},
		{"a second period", k[0], 3, append(slices.Clone(p), EnrolmentPeriod{From: at.Add(72 * time.Hour), Until: at.Add(96 * time.Hour), Category: "student"}), false},
		{"the same in another zone, to the nanosecond", k[0], 3, []EnrolmentPeriod{{From: at.In(time.FixedZone("x", 3600)).Add(time.Nanosecond), Until: at.Add(48 * time.Hour), Category: "concession"}}, true},
	} {
		if got := EnrolEntrySum(c.key, c.version, c.periods); (got == base) != c.same {
			t.Errorf("%s: same share %v, want %v", c.name, got == base, c.same)
		}
	}
	var d DenyDigest
	d.ToggleEnrolment(k[1], 1, nil)
	was := d
	d.ToggleEnrolment(k[0], 3, p)
	if d == was {
		t.Fatal("an entry toggled in leaves the digest")
	}
	d.ToggleSum(base)
	if d != was {
		t.Fatal("its share toggled out does not undo it")
	}
}

func TestFollowRotations(t *testing.T) {
	_, k0, _ := ed25519.GenerateKey(nil)
	_, k1, _ := ed25519.GenerateKey(nil)
	_, k2, _ := ed25519.GenerateKey(nil)
	_, stranger, _ := ed25519.GenerateKey(nil)
	link := func(from, to ed25519.PrivateKey) []byte {
		b, err := (&KeyRotation{NewKey: pubOf(to), IssuedAt: time.Now()}).Sign(from)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chain := [][]byte{link(k0, k1), link(k1, k2)}
	eq := func(got []ed25519.PublicKey, want ...ed25519.PrivateKey) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if !got[i].Equal(pubOf(want[i])) {
				return false
			}
		}
		return true
	}
	trusted := []ed25519.PublicKey{pubOf(k0)}
	for _, tc := range []struct {
		name    string
		trusted []ed25519.PublicKey
		retired []ed25519.PublicKey
		chain   [][]byte
		want    []ed25519.PrivateKey
	}{
		{"whole chain from the first key", trusted, nil, chain, []ed25519.PrivateKey{k2}},
		{"from the middle", []ed25519.PublicKey{pubOf(k1)}, nil, chain, []ed25519.PrivateKey{k2}},
		{"already at the end", []ed25519.PublicKey{pubOf(k2)}, nil, chain, []ed25519.PrivateKey{k2}},
		{"a stranger's link is passed over", trusted, nil, [][]byte{link(stranger, k1)}, []ed25519.PrivateKey{k0}},
		{"no way back to a retired key", []ed25519.PublicKey{pubOf(k2)}, []ed25519.PublicKey{pubOf(k0)}, [][]byte{link(k2, k0)}, []ed25519.PrivateKey{k2}},
		{"no chain", trusted, nil, nil, []ed25519.PrivateKey{k0}},
		// A signer retired along the chain stays retired within it.
		{"no way back within one chain", trusted, nil, [][]byte{link(k0, k1), link(k1, k0)}, []ed25519.PrivateKey{k1}},
	} {
		if got := FollowRotations(tc.trusted, tc.retired, tc.chain); !eq(got, tc.want...) {
			t.Errorf("%s: %d keys", tc.name, len(got))
		}
	}
	if !trusted[0].Equal(pubOf(k0)) || len(trusted) != 1 {
		t.Fatal("FollowRotations changed its input")
	}
}
