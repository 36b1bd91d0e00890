package clearing

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/faregate/faregate/fare"
)

// LedgerBindingFile, in clearing's data dir, names the settlement contract
// the store's batches are anchored to. Clearing writes it the first time a
// data dir meets a ledger and refuses, from then on, any other contract: a
// store reopened against a fresh chain (a kept simulation reopened with the
// wrong --data, an operator's typo in --contract) would otherwise deploy or
// adopt another contract and anchor every stored batch a second time.
const LedgerBindingFile = "ledger-binding.json"

// LedgerBinding is the content of LedgerBindingFile.
type LedgerBinding struct {
	// Contract is the settlement contract's address, 0x hex.
	Contract string `json:"contract"`
	// ChainID is the chain it is on (EIP-155): one admin deploying on two
	// chains gets the same address on both (CREATE from its first nonce),
	// so the address alone does not tell a staging chain from production.
	// Absent in bindings written before it was kept; recorded on the next
	// open.
	ChainID uint64 `json:"chain_id,omitempty"`
	// Since is when this data dir was first bound (RFC 3339, UTC).
	Since time.Time `json:"since"`
}

// ErrLedgerMismatch is returned by Open (and CheckLedgerBinding) when the
// ledger given is not the one the data dir's batches are anchored to.
var ErrLedgerMismatch = errors.New("clearing: another settlement contract than the one this data dir anchors to")

// ReadLedgerBinding reads dataDir's binding; ok is false when the data dir
// has never met a ledger.
func ReadLedgerBinding(dataDir string) (b LedgerBinding, ok bool, err error) {
	path := filepath.Join(dataDir, LedgerBindingFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return LedgerBinding{}, false, nil
	}
	if err != nil {
		return LedgerBinding{}, false, fmt.Errorf("clearing: ledger binding: %w", err)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return LedgerBinding{}, false, fmt.Errorf("clearing: ledger binding %s: %w", path, err)
	}
	if !common.IsHexAddress(b.Contract) {
		return LedgerBinding{}, false, fmt.Errorf("clearing: ledger binding %s: contract %q is not a 0x address", path, b.Contract)
	}
	return b, true, nil
}

// CheckLedgerBinding says whether the contract at address contract on
// chain chainID (0: not known yet) may anchor dataDir's batches: nil when
// the data dir is unbound or bound to it, ErrLedgerMismatch (naming both)
// otherwise. Callers that are about to create a chain call it first, so
// that nothing is deployed for a data dir that would then be refused; the
// audit calls it so as not to compare a store with another chain's
// contract at the same address.
func CheckLedgerBinding(dataDir string, contract common.Address, chainID uint64) error {
	b, ok, err := ReadLedgerBinding(dataDir)
	if err != nil || !ok {
		return err
	}
	if common.HexToAddress(b.Contract) != contract {
		return fmt.Errorf("%w: %s is bound to %s (since %s), the ledger given is %s; open the chain it anchored to (its embedded chain dir, or --eth-rpc with --contract %s)",
			ErrLedgerMismatch, dataDir, b.Contract, b.Since.Format(time.RFC3339), contract.Hex(), b.Contract)
	}
	if b.ChainID != 0 && chainID != 0 && b.ChainID != chainID {
		return fmt.Errorf("%w: %s is bound to %s on chain %d (since %s), the ledger given is on chain %d: the same address on another chain is another contract",
			ErrLedgerMismatch, dataDir, b.Contract, b.ChainID, b.Since.Format(time.RFC3339), chainID)
	}
	return nil
}

// bindLedger checks the ledger (its contract and chain) against dataDir's
// binding and records it when the data dir is new to ledgers, or the chain
// when the binding predates it.
func bindLedger(dataDir string, contract common.Address, chainID uint64, now time.Time) error {
	b, ok, err := ReadLedgerBinding(dataDir)
	if err != nil {
		return err
	}
	if ok {
		if err := CheckLedgerBinding(dataDir, contract, chainID); err != nil || b.ChainID != 0 {
			return err
		}
		b.ChainID = chainID
		return writeLedgerBinding(dataDir, b)
	}
	return writeLedgerBinding(dataDir, LedgerBinding{Contract: contract.Hex(), ChainID: chainID, Since: now.UTC().Truncate(time.Second)})
}

func writeLedgerBinding(dataDir string, b LedgerBinding) error {
	raw, _ := json.MarshalIndent(b, "", "  ")
	// Synced, then renamed and the directory synced: a power loss leaves
	// the old binding or the new, never an empty file clearing refuses.
	tmp := filepath.Join(dataDir, LedgerBindingFile+".tmp")
	if err := writeSynced(tmp, append(raw, '\n'), os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return fmt.Errorf("clearing: ledger binding: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, LedgerBindingFile)); err != nil {
		return fmt.Errorf("clearing: ledger binding: %w", err)
	}
	if err := fare.SyncDir(dataDir); err != nil {
		return fmt.Errorf("clearing: ledger binding: %w", err)
	}
	return nil
}
