package fare

import (
	"bytes"
	"crypto/ed25519"
	"errors"
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
	if len(k) != 32 || k == DenyKey(Face, "tok-1") || k == DenyKey(Card, "tok-2") || k != DenyKey(Card, "tok-1") {
		t.Fatalf("deny keys: %s", k)
	}
	parsed, err := ParseDenyKey(k)
	if err != nil || parsed != HashDeny(Card, "tok-1") {
		t.Fatalf("parse %s: %v", k, err)
	}
	for _, bad := range []string{"", k[:31], k + "0", "zz" + k[2:]} {
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

func TestDenyUpdateRoundTrip(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	for _, listed := range []bool{true, false} {
		u := DenyUpdate{Version: 42, Digest: DigestDenyList(testDenyKeys(3)), Listed: listed, Key: HashDeny(Face, "subject-1")}
		b, err := u.Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != DenyUpdateSize {
			t.Fatalf("update of %d bytes, want %d", len(b), DenyUpdateSize)
		}
		got, err := VerifyDenyUpdate(b, []ed25519.PublicKey{pubOf(other), pubOf(key)})
		if err != nil || *got != u {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, u)
		}
		if _, err := VerifyDenyUpdate(b, []ed25519.PublicKey{pubOf(other)}); !errors.Is(err, ErrUntrustedDenyList) {
			t.Fatalf("other key: %v", err)
		}
		for i := range b {
			m := bytes.Clone(b)
			m[i] ^= 0x20
			if _, err := VerifyDenyUpdate(m, []ed25519.PublicKey{pubOf(key)}); err == nil {
				t.Fatalf("byte %d flipped: accepted", i)
			}
		}
		for n := range len(b) {
			if _, err := VerifyDenyUpdate(b[:n], []ed25519.PublicKey{pubOf(key)}); err == nil {
				t.Fatalf("truncated to %d bytes: accepted", n)
			}
		}
		if _, err := VerifyDenyUpdate(append(bytes.Clone(b), 0), []ed25519.PublicKey{pubOf(key)}); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
	if _, err := (&DenyUpdate{}).Sign(key); err == nil {
		t.Fatal("signed an update of version 0")
	}
}

func TestDenyPageRoundTrip(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	keys := testDenyKeys(DenyPageKeys + 3)
	digest := DigestDenyList(keys)
	for _, tc := range []struct {
		name string
		page DenyPage
	}{
		{"empty list", DenyPage{Version: 0, Total: 0, Page: 0, Pages: 1}},
		{"emptied list", DenyPage{Version: 7, Total: 0, Page: 0, Pages: 1}},
		{"full first page", DenyPage{Version: 9000, Digest: digest, Total: uint32(len(keys)), Page: 0, Pages: 2, Keys: keys[:DenyPageKeys]}},
		{"last page", DenyPage{Version: 9000, Digest: digest, Total: uint32(len(keys)), Page: 1, Pages: 2, Keys: keys[DenyPageKeys:]}},
	} {
		b, err := tc.page.Sign(key)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := VerifyDenyPage(b, []ed25519.PublicKey{pubOf(key)})
		if err != nil || got.Version != tc.page.Version || got.Digest != tc.page.Digest || got.Total != tc.page.Total ||
			got.Page != tc.page.Page || got.Pages != tc.page.Pages || !slices.Equal(got.Keys, tc.page.Keys) {
			t.Fatalf("%s: round trip %+v, %v", tc.name, got, err)
		}
		if len(b) > MaxDenyPageSize {
			t.Fatalf("%s: %d bytes, limit %d", tc.name, len(b), MaxDenyPageSize)
		}
		// Every truncation and every flipped byte is refused (a full page
		// is checked at a sample of offsets to keep the test quick).
		step := 1
		if len(b) > 4096 {
			step = 61
		}
		for n := 0; n < len(b); n += step {
			if _, err := VerifyDenyPage(b[:n], []ed25519.PublicKey{pubOf(key)}); err == nil {
				t.Fatalf("%s: truncated to %d bytes: accepted", tc.name, n)
			}
			m := bytes.Clone(b)
			m[n] ^= 0x01
			if _, err := VerifyDenyPage(m, []ed25519.PublicKey{pubOf(key)}); err == nil {
				t.Fatalf("%s: byte %d flipped: accepted", tc.name, n)
			}
		}
	}
	// The largest page with the longest rotation chain ahead of it fits a
	// 64 KiB NATS message.
	chain := make([][]byte, MaxRotations)
	for i := range chain {
		chain[i] = make([]byte, KeyRotationSize)
	}
	if n := len(Bundle(chain, make([]byte, MaxDenyPageSize))); n >= 64<<10 {
		t.Fatalf("largest bundled page is %d bytes, NATS limit %d", n, 64<<10)
	}
}

func TestDenyPageInvalid(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	keys := testDenyKeys(DenyPageKeys + 3)
	good := func() DenyPage {
		return DenyPage{Version: 9000, Total: uint32(len(keys)), Page: 1, Pages: 2, Keys: slices.Clone(keys[DenyPageKeys:])}
	}
	for name, mut := range map[string]func(*DenyPage){
		"more keys than versions": func(p *DenyPage) { p.Version = 10 },
		"wrong page count":        func(p *DenyPage) { p.Pages = 3 },
		"page past the last":      func(p *DenyPage) { p.Page = 2 },
		"short last page":         func(p *DenyPage) { p.Keys = p.Keys[:2] },
		"keys out of order":       func(p *DenyPage) { p.Keys[0], p.Keys[1] = p.Keys[1], p.Keys[0] },
		"repeated key":            func(p *DenyPage) { p.Keys[1] = p.Keys[0] },
		"keys on an empty list":   func(p *DenyPage) { p.Total, p.Pages, p.Page = 0, 1, 0 },
	} {
		p := good()
		mut(&p)
		if _, err := p.Sign(key); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	// Decoders name what is wrong.
	b, _ := (&DenyPage{Version: 3, Total: 1, Pages: 1, Keys: keys[:1]}).Sign(key)
	for _, tc := range []struct {
		name string
		b    []byte
		want error
		text string
	}{
		{"empty", nil, ErrMalformed, "empty"},
		{"confirmation", append([]byte{ConfirmationVersion}, b[1:]...), ErrMalformed, "tag"},
		{"format 2", append([]byte{DenyPageTag, 2}, b[2:]...), ErrUnknownVersion, "format version 2"},
		{"too large", append([]byte{DenyPageTag, 1}, make([]byte, MaxDenyPageSize)...), ErrTooLarge, "limit"},
		{"short", b[:20], ErrMalformed, "shorter"},
		{"trailing", append(bytes.Clone(b[:len(b)-SignatureSize]), append([]byte{0}, b[len(b)-SignatureSize:]...)...), ErrMalformed, "key bytes"},
	} {
		if _, err := DecodeDenyPage(tc.b); !errors.Is(err, tc.want) || !bytes.Contains([]byte(err.Error()), []byte(tc.text)) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, err, tc.want, tc.text)
		}
	}
}

// TestDenyDomainSeparation: no deny-list message verifies as a confirmation,
// a rotation or another deny-list message, nor the reverse, under the same
// key.
func TestDenyDomainSeparation(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	trusted := []ed25519.PublicKey{pubOf(key)}
	upd, _ := (&DenyUpdate{Version: 1, Listed: true, Key: HashDeny(Card, "x")}).Sign(key)
	page, _ := (&DenyPage{Version: 1, Total: 1, Pages: 1, Keys: []DenyHash{HashDeny(Card, "x")}}).Sign(key)
	conf := testConfirmation()
	cb, _ := conf.Sign(key)
	rot, _ := (&KeyRotation{NewKey: pubOf(key), IssuedAt: time.Now()}).Sign(key)
	for name, b := range map[string][]byte{"update": upd, "page": page, "confirmation": cb, "rotation": rot} {
		if _, err := VerifyDenyUpdate(b, trusted); (err == nil) != (name == "update") {
			t.Errorf("%s as an update: %v", name, err)
		}
		if _, err := VerifyDenyPage(b, trusted); (err == nil) != (name == "page") {
			t.Errorf("%s as a page: %v", name, err)
		}
		if _, err := VerifyConfirmation(b, trusted); (err == nil) != (name == "confirmation") {
			t.Errorf("%s as a confirmation: %v", name, err)
		}
		if _, err := VerifyKeyRotation(b, trusted); (err == nil) != (name == "rotation") {
			t.Errorf("%s as a rotation: %v", name, err)
		}
		// Re-tagged, the signature no longer covers it.
		m := bytes.Clone(b)
		switch m[0] {
		case DenyUpdateTag:
			m[0] = DenyPageTag
		case DenyPageTag:
			m[0] = DenyUpdateTag
		}
		if _, err := VerifyDenyUpdate(m, trusted); err == nil && name != "update" {
			t.Errorf("%s re-tagged verifies as an update", name)
		}
		if _, err := VerifyDenyPage(m, trusted); err == nil && name != "page" {
			t.Errorf("%s re-tagged verifies as a page", name)
		}
	}
	// Bundled with the rotation chain, like confirmations.
	rots, msg, err := Unbundle(Bundle([][]byte{rot}, upd))
	if err != nil || len(rots) != 1 || !bytes.Equal(msg, upd) {
		t.Fatalf("bundled update: %d rotations, %v", len(rots), err)
	}
}

func TestDenySyncRequest(t *testing.T) {
	r := DenySyncRequest{Have: 1 << 40, Page: 7}
	b := r.Encode()
	got, err := DecodeDenySyncRequest(b)
	if err != nil || got != r {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for n := range len(b) {
		if _, err := DecodeDenySyncRequest(b[:n]); err == nil {
			t.Fatalf("truncated to %d: accepted", n)
		}
	}
	for _, tc := range []struct {
		b    []byte
		want error
	}{
		{append(bytes.Clone(b), 0), ErrMalformed},
		{append([]byte{'X'}, b[1:]...), ErrMalformed},
		{append([]byte{DenySyncTag, 9}, b[2:]...), ErrUnknownVersion},
	} {
		if _, err := DecodeDenySyncRequest(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%x: %v, want %v", tc.b, err, tc.want)
		}
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
	} {
		if got := FollowRotations(tc.trusted, tc.retired, tc.chain); !eq(got, tc.want...) {
			t.Errorf("%s: %d keys", tc.name, len(got))
		}
	}
	if !trusted[0].Equal(pubOf(k0)) || len(trusted) != 1 {
		t.Fatal("FollowRotations changed its input")
	}
}

func FuzzDecodeDenyUpdate(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	b, _ := (&DenyUpdate{Version: 5, Listed: true, Key: HashDeny(Card, "c")}).Sign(key)
	f.Add(b)
	f.Add([]byte{DenyUpdateTag, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := DecodeDenyUpdate(b)
		if err != nil {
			return
		}
		if u.Version == 0 || len(b) != DenyUpdateSize {
			t.Fatalf("decoded an invalid update: %+v from %d bytes", u, len(b))
		}
		if _, err := VerifyDenyUpdate(b, []ed25519.PublicKey{pubOf(key)}); err == nil && !bytes.Equal(b, mustSignUpdate(t, u, key)) {
			t.Fatal("verified bytes that are not the update's encoding")
		}
	})
}

func mustSignUpdate(t *testing.T, u *DenyUpdate, key ed25519.PrivateKey) []byte {
	b, err := u.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzDecodeDenyPage(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	keys := testDenyKeys(3)
	b, _ := (&DenyPage{Version: 5, Digest: DigestDenyList(keys), Total: 3, Pages: 1, Keys: keys}).Sign(key)
	f.Add(b)
	f.Add([]byte{DenyPageTag, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeDenyPage(b)
		if err != nil {
			return
		}
		if p.validate() != nil || len(b) > MaxDenyPageSize {
			t.Fatalf("decoded an invalid page: %+v", p)
		}
	})
}

func FuzzDecodeDenySyncRequest(f *testing.F) {
	f.Add(DenySyncRequest{Have: 3, Page: 1}.Encode())
	f.Add([]byte{DenySyncTag})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeDenySyncRequest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Encode(), b) {
			t.Fatalf("%x decoded to %+v, which encodes differently", b, r)
		}
	})
}
