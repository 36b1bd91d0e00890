package terminal

import (
	"crypto/ed25519"

	"github.com/faregate/faregate/fare"
)

// LoadOrCreateKey reads a terminal's ed25519 seed (hex) from path, creating
// a fresh key with mode 0600 if the file does not exist. The private key
// never leaves the terminal; its public half goes into the registry, and its
// NATS identity is derived from it (fare.NATSIdentity).
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	return fare.LoadOrCreateKey(path, "terminal key")
}
