package clearing

import (
	"crypto/ed25519"
	"runtime"
	"sync"

	"github.com/hdevalence/ed25519consensus"
)

// verifyBatch checks signatures in parallel batches. Batch verification
// (ed25519consensus, ZIP-215 rules) costs about half a single Verify per
// signature; when a batch fails, its members are checked one by one with the
// same rules to find the forgeries, so one bad event costs its batch a
// second pass but never lets anything else through.
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
	chunks := min(workers, (n+minChunk-1)/minChunk)
	if chunks < 1 {
		chunks = 1
	}
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
		ok[lo] = ed25519consensus.Verify(pubs[lo], msgs[lo], sigs[lo])
		return
	}
	bv := ed25519consensus.NewPreallocatedBatchVerifier(hi - lo)
	for i := lo; i < hi; i++ {
		bv.Add(pubs[i], msgs[i], sigs[i])
	}
	if bv.Verify() {
		for i := lo; i < hi; i++ {
			ok[i] = true
		}
		return
	}
	for i := lo; i < hi; i++ {
		ok[i] = ed25519consensus.Verify(pubs[i], msgs[i], sigs[i])
	}
}
