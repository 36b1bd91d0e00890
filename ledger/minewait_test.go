package ledger

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
)

// TestWaitMinedGivesUp: a node that never shows a transaction's receipt
// (as after a restart that dropped it) makes a transaction fail with
// ErrNotMined after MineWait instead of waiting forever, and the caller
// can go on (here the transaction had been mined, so the registration is
// there once the node answers again).
func TestWaitMinedGivesUp(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	var hide atomic.Bool
	upstream := e.HTTPEndpoint()
	proxy := rpcProxy(t, upstream, func(body []byte) ([]byte, bool) {
		if !hide.Load() || !bytes.Contains(body, []byte(`"eth_getTransactionReceipt"`)) {
			return nil, false
		}
		// The receipt is not known: result null, as geth answers.
		id := body[bytes.Index(body, []byte(`"id":`))+5:]
		id = id[:bytes.IndexAny(id, ",}")]
		return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":null}`), true
	}, nil)

	key, _ := crypto.GenerateKey()
	if err := e.Fund(ctx, crypto.PubkeyToAddress(key.PublicKey), new(big.Int).Mul(big.NewInt(10), big.NewInt(params.Ether))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Admin().AdmitOperator(ctx, "tram", crypto.PubkeyToAddress(key.PublicKey)); err != nil {
		t.Fatal(err)
	}
	keyFile := writeKey(t, key)
	op, err := Dial(ctx, proxy, keyFile, e.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()

	prev := MineWait
	MineWait = 300 * time.Millisecond
	t.Cleanup(func() { MineWait = prev })
	hide.Store(true)
	_, err = op.KeyAccount().RegisterTerminals(ctx, []TerminalRegistration{{ID: "tram-1", Stop: "harbour", PublicKey: [32]byte{9}, KeyProof: testKeyProof}})
	if !errors.Is(err, ErrNotMined) || !strings.Contains(err.Error(), "no receipt of 0x") {
		t.Fatalf("register with receipts hidden: %v, want ErrNotMined naming the transaction", err)
	}
	hide.Store(false)
	if got, err := op.Terminal(ctx, "tram-1"); err != nil || got.Operator != "tram" {
		t.Fatalf("the transaction was mined all along: %+v, %v", got, err)
	}
}

func writeKey(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "op.key")
	if err := os.WriteFile(p, []byte("0x"+hex.EncodeToString(crypto.FromECDSA(key))), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBatchReadWithoutLogs: a node that answers no logs for a batch's
// block (pruned, or another chain) makes reading the batch fail, saying
// so, rather than read it with its amounts missing.
func TestBatchReadWithoutLogs(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	if _, err := e.OperatorAccount(ctx, "metro"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := e.CommitBatch(ctx, Batch{ID: 1, Root: [32]byte{1}, EventCount: 1, PeriodStart: now, PeriodEnd: now,
		Amounts: []OperatorAmount{{Operator: "metro", Net: 250}}}); err != nil {
		t.Fatal(err)
	}
	proxy := rpcProxy(t, e.HTTPEndpoint(), func(body []byte) ([]byte, bool) {
		if !bytes.Contains(body, []byte(`"eth_getLogs"`)) {
			return nil, false
		}
		id := body[bytes.Index(body, []byte(`"id":`))+5:]
		id = id[:bytes.IndexAny(id, ",}")]
		return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":[]}`), true
	}, nil)
	key, _ := crypto.GenerateKey()
	c, err := Dial(ctx, proxy, writeKey(t, key), e.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Batch(ctx, 1); err == nil || !strings.Contains(err.Error(), "no BatchCommitted log") || strings.Contains(err.Error(), "-1") {
		t.Fatalf("batch read with no logs: %v, want an error saying the node has no log of it", err)
	}
}
