package clearing

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// TestLedgerBinding: a data dir is bound to the first ledger it meets, its
// contract and its chain; the same address on another chain (one admin
// deploying on staging and production gets the same address) is refused
// as another contract, as is another address. A binding written before the
// chain was kept takes the chain at the next open.
func TestLedgerBinding(t *testing.T) {
	now := time.Now()
	a, b := common.HexToAddress("0x00000000000000000000000000000000000000aa"), common.HexToAddress("0x00000000000000000000000000000000000000bb")
	dir := t.TempDir()
	if err := bindLedger(dir, a, 7, now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		contract common.Address
		chain    uint64
		want     string
	}{
		{"the same ledger", a, 7, ""},
		{"the same address on another chain", a, 8, "on chain 7"},
		{"another contract", b, 7, "is bound to " + a.Hex()},
	} {
		err := bindLedger(dir, tc.contract, tc.chain, now)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrLedgerMismatch) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrLedgerMismatch saying %q", tc.name, err, tc.want)
		}
		if err := CheckLedgerBinding(dir, tc.contract, tc.chain); !errors.Is(err, ErrLedgerMismatch) {
			t.Errorf("%s: the audit's check says %v", tc.name, err)
		}
	}
	old := t.TempDir()
	if err := os.WriteFile(filepath.Join(old, LedgerBindingFile), []byte(`{"contract": "`+a.Hex()+`", "since": "2026-11-01T00:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := bindLedger(old, a, 9, now); err != nil {
		t.Fatalf("a binding without its chain: %v", err)
	}
	if got, ok, err := ReadLedgerBinding(old); err != nil || !ok || got.ChainID != 9 || !got.Since.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("binding after adopting the chain: %+v %v %v", got, ok, err)
	}
	if err := bindLedger(old, a, 10, now); !errors.Is(err, ErrLedgerMismatch) {
		t.Fatalf("after adopting chain 9, chain 10: %v", err)
	}
}
