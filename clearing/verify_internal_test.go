package clearing

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hdevalence/ed25519consensus"
)

// TestVerifyBatchAgreesWithConsensus: the batch verifier clearing uses
// (curve25519-voi, ZIP-215, expanded keys) accepts exactly what
// ed25519consensus's single ZIP-215 verification accepts, signature by
// signature, whatever the batch split and wherever the forgeries sit:
// valid signatures, flipped bits, another message, another key, a
// small-order key with its trivial signature (valid under ZIP-215), a
// non-canonical S (never valid), truncated signatures and a key that is no
// point.
func TestVerifyBatchAgreesWithConsensus(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	keys := make([]ed25519.PrivateKey, 12)
	for i := range keys {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i), 0x5a
		keys[i] = ed25519.NewKeyFromSeed(seed)
	}
	smallOrder := make(ed25519.PublicKey, ed25519.PublicKeySize)
	smallOrder[0] = 1 // the identity point
	trivial := make([]byte, ed25519.SignatureSize)
	trivial[0] = 1 // R = identity, S = 0
	notAPoint := make(ed25519.PublicKey, ed25519.PublicKeySize)
	for i := range notAPoint {
		notAPoint[i] = 0xff
	}
	notAPoint[31] = 0x7f
	for _, n := range []int{1, 2, 31, 33, 64, 300, 1000} {
		pubs := make([]ed25519.PublicKey, n)
		msgs, sigs := make([][]byte, n), make([][]byte, n)
		for i := range n {
			k := keys[rng.IntN(len(keys))]
			pubs[i] = k.Public().(ed25519.PublicKey)
			msgs[i] = fmt.Appendf(nil, "event %d of batch %d", i, n)
			sigs[i] = ed25519.Sign(k, msgs[i])
			switch rng.IntN(12) {
			case 0:
				sigs[i][rng.IntN(64)] ^= 1 << rng.IntN(8)
			case 1:
				msgs[i] = append(msgs[i], '!')
			case 2:
				pubs[i] = keys[(rng.IntN(len(keys)-1)+1)%len(keys)].Public().(ed25519.PublicKey)
			case 3:
				pubs[i], sigs[i] = smallOrder, trivial
			case 4:
				sigs[i][63] |= 0xf0 // S far above the group order
			case 5:
				sigs[i] = sigs[i][:63]
			case 6:
				pubs[i] = notAPoint
			}
		}
		want := make([]bool, n)
		for i := range n {
			want[i] = len(sigs[i]) == ed25519.SignatureSize && ed25519consensus.Verify(pubs[i], msgs[i], sigs[i])
		}
		for _, workers := range []int{1, 2, 3} {
			got := verifyBatch(pubs, msgs, sigs, workers)
			for i := range n {
				if got[i] != want[i] {
					t.Errorf("batch of %d, %d workers: signature %d: got %v, ed25519consensus says %v", n, workers, i, got[i], want[i])
				}
			}
		}
	}
	if !verifyOne(smallOrder, []byte("anything"), trivial) || !ed25519consensus.Verify(smallOrder, []byte("anything"), trivial) {
		t.Error("a small-order key's trivial signature is valid under ZIP-215, and both must say so")
	}
	if verifyOne(ed25519.PublicKey(notAPoint[:31]), []byte("x"), trivial) {
		t.Error("a 31-byte key verified")
	}
}
