package ledger

import (
	"crypto/ecdsa"
	"path/filepath"
	"sync"
	"testing"
)

// TestLoadOrCreateKeyRace: processes opening a new data dir at once all get
// the key the file keeps (an outside review saw the second replace the
// first's, the chain deployed with one key and every later start reading
// the other: never the clearing house again).
func TestLoadOrCreateKeyRace(t *testing.T) {
	for round := range 20 {
		path := filepath.Join(t.TempDir(), "clearinghouse.key")
		keys := make([]*ecdsa.PrivateKey, 4)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() { keys[i], errs[i] = loadOrCreateKey(path) })
		}
		wg.Wait()
		kept, err := readKeyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			if errs[i] != nil || !k.Equal(kept) {
				t.Fatalf("round %d, caller %d: %v, key the file keeps: %v", round, i, errs[i], k != nil && k.Equal(kept))
			}
		}
	}
}
