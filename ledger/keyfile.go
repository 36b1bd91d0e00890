package ledger

import (
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// NewKeyFile makes a new secp256k1 key and writes it to path as hex (0x
// prefix, the format Dial and ReadKeyFile take), readable by its owner only.
// It never overwrites a file: a key already there may be an operator's
// account on chain. It returns the key's account address.
func NewKeyFile(path string) (common.Address, error) {
	key, err := crypto.GenerateKey()
	if err != nil {
		return common.Address{}, fmt.Errorf("new key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return common.Address{}, fmt.Errorf("key file %s exists: not overwritten (it may be an account on chain; read its address with `faregate ledger address --eth-key %s`)", path, path)
	}
	if err != nil {
		return common.Address{}, fmt.Errorf("new key file: %w", err)
	}
	_, err = f.WriteString("0x" + hex.EncodeToString(crypto.FromECDSA(key)) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return common.Address{}, fmt.Errorf("new key file %s: %w", path, err)
	}
	return KeyAddress(&key.PublicKey), nil
}

// KeyAddress is the account address of a secp256k1 public key.
func KeyAddress(pub *ecdsa.PublicKey) common.Address { return crypto.PubkeyToAddress(*pub) }
