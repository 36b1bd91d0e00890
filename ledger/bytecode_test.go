package ledger

import (
	"os"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/faregate/faregate/ledger/settlementabi"
)

// TestBytecodeLondon guards the evmVersion pin in compile.js: the deploy code
// must not contain PUSH0 (0x5f, Shanghai), which London-era chains such as
// Clique networks reject. It also checks the bindings embed the committed .bin.
func TestBytecodeLondon(t *testing.T) {
	bin, err := os.ReadFile("contracts/build/Settlement.bin")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := settlementabi.SettlementMetaData.Bin, "0x"+strings.TrimSpace(string(bin)); got != want {
		t.Fatal("settlementabi is stale: rerun ledger/contracts/build.sh")
	}
	code := common.FromHex(string(bin))
	// solc appends CBOR metadata whose length is in the last two bytes; it is
	// data, not code.
	n := int(code[len(code)-2])<<8 | int(code[len(code)-1])
	if pc, ok := findPush0(code[:len(code)-2-n]); ok {
		t.Fatalf("PUSH0 at byte %d: compiled for an EVM newer than london", pc)
	}
}

// findPush0 walks code as instructions, skipping PUSH immediates, and returns
// the offset of the first PUSH0.
func findPush0(code []byte) (int, bool) {
	for pc := 0; pc < len(code); pc++ {
		op := code[pc]
		if op == 0x5f {
			return pc, true
		}
		if op >= 0x60 && op <= 0x7f { // PUSH1..PUSH32
			pc += int(op - 0x5f)
		}
	}
	return 0, false
}

func TestFindPush0(t *testing.T) {
	if _, ok := findPush0([]byte{0x60, 0x5f, 0x61, 0x5f, 0x5f, 0x00}); ok {
		t.Fatal("0x5f inside PUSH data taken for PUSH0")
	}
	if pc, ok := findPush0([]byte{0x60, 0x01, 0x5f}); !ok || pc != 2 {
		t.Fatalf("PUSH0 not found: %d %v", pc, ok)
	}
}
