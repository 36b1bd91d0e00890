package clearing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"github.com/faregate/faregate/fare"
)

func TestParseRegistryRejects(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	key := `"` + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)) + `"`
	proofOf := func(id, stop string) string {
		e, err := NewTerminalEntry(priv, id, "metro", stop)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("0x%x", e.KeyProof)
	}
	good := `{"currency":"EUR","operators":[{"id":"metro","name":"M","flat_fare":250}],"terminals":[{"id":"t1","operator":"metro","stop":"S1","public_key":` + key + `}]}`
	if _, err := ParseRegistry([]byte(good)); err != nil {
		t.Fatalf("good registry: %v", err)
	}
	tests := []struct{ name, json, mention string }{
		{"not json", `{`, "decode registry"},
		{"unknown field", strings.Replace(good, `"currency"`, `"curency"`, 1), "unknown field"},
		{"unknown currency", strings.Replace(good, `"EUR"`, `"XYZ"`, 1), "XYZ"},
		{"no operators", `{"currency":"EUR","operators":[],"terminals":[]}`, "no operators"},
		{"negative fare", strings.Replace(good, `250`, `-1`, 1), "flat fare -1 minor units: want 0 to"},
		{"a fare whose sums could wrap", strings.Replace(good, `250`, `1000000000001`, 1), "flat fare 1000000000001 minor units: want 0 to 1000000000000"},
		{"terminal of unknown operator", strings.Replace(good, `"operator":"metro"`, `"operator":"bus"`, 1), `unknown operator "bus"`},
		{"short key", strings.Replace(good, key, `"AAAA"`, 1), "public key is 3 bytes"},
		{"all-zero key (small order)", strings.Replace(good, key, `"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="`, 1), "small order"},
		{"identity key (small order)", strings.Replace(good, key, `"0x01`+strings.Repeat("00", 31)+`"`, 1), "small order"},
		{"key off the curve", strings.Replace(good, key, `"0x02`+strings.Repeat("00", 31)+`"`, 1), "no point of the curve"},
		{"key plus a torsion point (mixed order)", strings.Replace(good, key, `"`+mixedOrder(priv)+`"`, 1), "has a small-order part"},
		{"operator id too long for the ledger", strings.ReplaceAll(good, `"metro"`, `"`+strings.Repeat("m", 33)+`"`), "at most 32"},
		{"dot in id", strings.Replace(good, `"id":"t1"`, `"id":"t.1"`, 1), `terminal 0 id "t.1"`},
		{"key neither hex nor base64", strings.Replace(good, key, `"not a key!"`, 1), "neither 0x hex nor base64"},
		{"bad hex key", strings.Replace(good, key, `"0x`+strings.Repeat("zz", 32)+`"`, 1), "not hex after 0x"},
		{"short hex key", strings.Replace(good, key, `"0x0102"`, 1), "public key is 2 bytes"},
		{"unknown terminal field", strings.Replace(good, `"stop":"S1"`, `"stop":"S1","gate":"g1"`, 1), "unknown field"},
		{"duplicate terminal", strings.Replace(good, `}]}`, `},{"id":"t1","operator":"metro","stop":"S1","public_key":`+key+`}]}`, 1), "listed twice"},
		// A key proof given must be the key's signature of this entry.
		{"key proof of another terminal", strings.Replace(good, `"stop":"S1"`, `"stop":"S1","key_proof":"`+proofOf("t9", "S1")+`"`, 1), `terminal "t1": key proof does not verify: not the key's signature of operator metro's terminal t1 at stop S1`},
		{"key proof of another stop", strings.Replace(good, `"stop":"S1"`, `"stop":"S1","key_proof":"`+proofOf("t1", "S2")+`"`, 1), "key proof does not verify"},
		{"key proof not hex", strings.Replace(good, `"stop":"S1"`, `"stop":"S1","key_proof":"0xzz"`, 1), `key proof "0xzz": want 0x and 64 bytes in hex`},
		{"key proof without 0x", strings.Replace(good, `"stop":"S1"`, `"stop":"S1","key_proof":"`+proofOf("t1", "S1")[2:]+`"`, 1), "want 0x and 64 bytes in hex"},
		{"key proof short", strings.Replace(good, `"stop":"S1"`, `"stop":"S1","key_proof":"0x0102"`, 1), `key proof "0x0102": want 0x and 64 bytes in hex`},
	}
	// The entry keygen prints (with its proof) is read back and verified.
	proven := strings.Replace(good, `"stop":"S1"`, `"stop":"S1","key_proof":"`+proofOf("t1", "S1")+`"`, 1)
	if r, err := ParseRegistry([]byte(proven)); err != nil || len(r.Terminals[0].KeyProof) != 64 {
		t.Fatalf("registry with the entry's key proof: %v", err)
	} else if out, _ := json.Marshal(r.Terminals[0]); !strings.Contains(string(out), `"key_proof":"`+proofOf("t1", "S1")+`"`) {
		t.Fatalf("terminal written as %s, want its key proof in 0x hex", out)
	}
	// The registry writes keys in 0x hex and reads its own output back;
	// base64 (what files held before) is still read.
	r, err := ParseRegistry([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	hexKey := fmt.Sprintf("0x%x", []byte(r.Terminals[0].PublicKey))
	out, err := json.Marshal(r.Terminals[0])
	if err != nil || !strings.Contains(string(out), `"public_key":"`+hexKey+`"`) {
		t.Fatalf("terminal written as %s (%v), want its key in 0x hex", out, err)
	}
	if _, err := ParseRegistry([]byte(strings.Replace(good, key, `"`+hexKey+`"`, 1))); err != nil {
		t.Fatalf("registry with a 0x hex key: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRegistry([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.mention)
			}
		})
	}
}

func FuzzParseRegistry(f *testing.F) {
	f.Add([]byte(`{"currency":"EUR","operators":[{"id":"metro","flat_fare":250}],"terminals":[]}`))
	f.Add([]byte(`{"currency":"EUR","operators":[{"id":"metro","flat_fare":250}],"terminals":[{"id":"t1","operator":"metro","stop":"S1","public_key":"0x` + strings.Repeat("ab", 32) + `"}]}`))
	f.Add([]byte(`{"currency":"EUR","operators":[{"id":"metro","flat_fare":250}],"terminals":[{"id":"t1","operator":"metro","stop":"S1","public_key":"0x` + strings.Repeat("ab", 32) + `","key_proof":"0x` + strings.Repeat("cd", 64) + `"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRegistry(b)
		if err != nil {
			return
		}
		for _, term := range r.Terminals {
			if _, ok := r.Operator(term.Operator); !ok {
				t.Fatalf("accepted terminal %s of unknown operator", term.ID)
			}
			if term.KeyProof != nil && fare.VerifyKeyProof(term.PublicKey, term.Operator, term.ID, term.Stop, term.KeyProof) != nil {
				t.Fatalf("accepted terminal %s with a key proof that does not verify", term.ID)
			}
		}
	})
}

// mixedOrder is priv's public key plus the point of order 2, (0, -1), in
// 0x hex: the same secret under another encoding.
func mixedOrder(priv ed25519.PrivateKey) string {
	p, err := new(edwards25519.Point).SetBytes(priv.Public().(ed25519.PublicKey))
	if err != nil {
		panic(err)
	}
	order2 := append([]byte{0xec}, bytes.Repeat([]byte{0xff}, 30)...)
	order2 = append(order2, 0x7f)
	t, err := new(edwards25519.Point).SetBytes(order2)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("0x%x", new(edwards25519.Point).Add(p, t).Bytes())
}
