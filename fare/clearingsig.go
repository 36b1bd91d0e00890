package fare

import (
	"crypto/ed25519"
	"sync"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// verifyClearing checks a signature made by one of clearing's keys (a
// confirmation, a gate-list entry, a key rotation) with the standard
// library's rules, through curve25519-voi and the key's expanded form kept
// across calls: a gate checks a confirmation for each of its taps, and the
// expansion (a point decompression) was more than a quarter of each check
// (41.9 to 30.1 µs here, BenchmarkVerifyClearing).
func verifyClearing(k ed25519.PublicKey, msg, sig []byte) bool {
	if len(k) != ed25519.PublicKeySize {
		return false
	}
	e, ok := expandedKeys.Load(string(k))
	if !ok {
		x, err := voi.NewExpandedPublicKey(voi.PublicKey(k))
		if err != nil {
			return false // not a point: nothing verifies under it
		}
		e, _ = expandedKeys.LoadOrStore(string(k), x)
	}
	return voi.VerifyExpandedWithOptions(e.(*voi.ExpandedPublicKey), msg, sig, stdlibRules)
}

// expandedKeys are the clearing keys expanded so far: those a terminal or
// a simulator was given or learnt by rotation, never a key a message
// names, so it stays a handful.
var expandedKeys sync.Map // string(public key) -> *voi.ExpandedPublicKey

// stdlibRules are crypto/ed25519's verification rules, which these
// signatures were always checked by.
var stdlibRules = &voi.Options{Verify: voi.VerifyOptionsStdLib}
