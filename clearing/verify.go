package clearing

import (
	"crypto/ed25519"
	"runtime"
	"sync"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// zip215 are the verification rules for every terminal signature: ZIP-215
// (cofactored, canonical-agnostic), the rules under which batch and single
// verification always agree, so a batch never accepts what one-by-one
// checking would refuse or the other way round.
var zip215 = &voi.Options{Verify: voi.VerifyOptionsZIP_215}

// expandedKeys caches each terminal key's decompressed point and its
// precomputed table (curve25519-voi's ExpandedPublicKey): a gate signs
// thousands of events a day with one key, and expanding it is a good part
// of a verification's cost.
type expandedKeys struct {
	mu sync.RWMutex
	m  map[string]*voi.ExpandedPublicKey
}

// maxExpandedKeys bounds the cache; past it, it starts again (a city has a
// few thousand terminals, each entry about 1.5 KB).
const maxExpandedKeys = 1 << 16

var verifyKeys = &expandedKeys{m: make(map[string]*voi.ExpandedPublicKey)}

// get returns pub expanded, or nil if it is no valid point (its signatures
// then fail).
func (c *expandedKeys) get(pub ed25519.PublicKey) *voi.ExpandedPublicKey {
	c.mu.RLock()
	k, ok := c.m[string(pub)]
	c.mu.RUnlock()
	if ok {
		return k
	}
	k, err := voi.NewExpandedPublicKey(voi.PublicKey(pub))
	if err != nil {
		k = nil
	}
	c.mu.Lock()
	if len(c.m) >= maxExpandedKeys {
		c.m = make(map[string]*voi.ExpandedPublicKey)
	}
	c.m[string(pub)] = k
	c.mu.Unlock()
	return k
}

// verifyBatch checks signatures in parallel batches, one per worker.
// Batch verification (curve25519-voi, ZIP-215 rules, keys expanded once)
// costs a fraction of a single verification per signature; when a batch
// fails the verifier finds the forgeries itself, so one bad event costs its
// batch more time but never lets anything else through.
//
// ok[i] reports whether msgs[i] carries a valid signature by pubs[i].
func verifyBatch(pubs []ed25519.PublicKey, msgs, sigs [][]byte, workers int) []bool {
	n := len(msgs)
	ok := make([]bool, n)
	if n == 0 {
		return ok
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const minChunk = 32
	chunks := max(1, min(workers, (n+minChunk-1)/minChunk))
	var wg sync.WaitGroup
	for c := range chunks {
		lo, hi := c*n/chunks, (c+1)*n/chunks
		wg.Add(1)
		go func() {
			defer wg.Done()
			verifyRange(pubs, msgs, sigs, ok, lo, hi)
		}()
	}
	wg.Wait()
	return ok
}

func verifyRange(pubs []ed25519.PublicKey, msgs, sigs [][]byte, ok []bool, lo, hi int) {
	if hi-lo == 1 {
		ok[lo] = verifyOne(pubs[lo], msgs[lo], sigs[lo])
		return
	}
	bv := voi.NewBatchVerifierWithCapacity(hi - lo)
	var single []int // entries whose key is no valid point: refused alone
	for i := lo; i < hi; i++ {
		k := verifyKeys.get(pubs[i])
		if k == nil || len(sigs[i]) != ed25519.SignatureSize {
			single = append(single, i)
			continue
		}
		bv.AddExpandedWithOptions(k, msgs[i], sigs[i], zip215)
	}
	_, valid := bv.Verify(nil)
	j := 0
	for i := lo; i < hi; i++ {
		if len(single) > 0 && single[0] == i {
			single = single[1:]
			continue // ok[i] stays false
		}
		ok[i] = valid[j]
		j++
	}
}

// verifyOne checks one signature by the same rules as a batch.
func verifyOne(pub ed25519.PublicKey, msg, sig []byte) bool {
	k := verifyKeys.get(pub)
	if k == nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	return voi.VerifyExpandedWithOptions(k, msg, sig, zip215)
}
