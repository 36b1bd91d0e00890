package ledger

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
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

// TestStuckTransactionSentAgain: a commit whose tip the chain's miner no
// longer takes (its floor raised after the tip was chosen, as a base fee
// rising or a node's minimum tip does) is sent again after BumpAfter, same
// nonce and call, fees a quarter higher; the replacement is mined, its
// receipt is the one reported, and the batch is on chain once. Before,
// the commit sat unmined until ErrNotMined, and every later transaction
// of the key queued behind its nonce.
func TestStuckTransactionSentAgain(t *testing.T) {
	ctx := testContext(t)
	var first atomic.Value
	var logs syncBuffer
	e := openTest(t, t.TempDir(), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), WithAfterSend(func(h common.Hash) {
		if first.Load() == nil {
			first.Store(h)
		}
	}))
	if _, err := e.OperatorAccount(ctx, "metro"); err != nil {
		t.Fatal(err)
	}
	// The tip the next commit will be sent with: what the node suggests.
	tip, err := e.settlement.eth.SuggestGasTipCap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	floor := new(big.Int).Div(new(big.Int).Mul(tip, big.NewInt(6)), big.NewInt(5)) // a fifth above it
	prevBump, prevWait := BumpAfter, MineWait
	BumpAfter, MineWait = 300*time.Millisecond, 30*time.Second
	t.Cleanup(func() { BumpAfter, MineWait = prevBump, prevWait })
	if err := e.backend.Miner().SetGasTip(floor); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rcpt, err := e.CommitBatch(ctx, Batch{ID: 1, Root: [32]byte{1}, EventCount: 1, PeriodStart: now, PeriodEnd: now,
		Amounts: []OperatorAmount{{Operator: "metro", Net: 250}}})
	if err != nil {
		t.Fatalf("commit with its tip below the miner's floor: %v\n%s", err, logs.String())
	}
	sent, _ := first.Load().(common.Hash)
	if rcpt.TxHash == sent || sent == (common.Hash{}) {
		t.Fatalf("receipt of %s, the transaction first sent (%s): want its replacement's", rcpt.TxHash, sent)
	}
	mined, _, err := e.settlement.eth.TransactionByHash(ctx, rcpt.TxHash)
	if err != nil {
		t.Fatal(err)
	}
	if mined.GasTipCap().Cmp(floor) < 0 {
		t.Errorf("the replacement's tip %s is below the floor %s it was mined under", mined.GasTipCap(), floor)
	}
	if !strings.Contains(logs.String(), "sent again with higher fees") || !strings.Contains(logs.String(), sent.Hex()) {
		t.Errorf("no log line naming the stuck transaction and its replacement:\n%s", logs.String())
	}
	if _, _, err := e.settlement.eth.TransactionByHash(ctx, sent); err == nil {
		if r, err := e.settlement.eth.TransactionReceipt(ctx, sent); err == nil {
			t.Errorf("the replaced transaction was mined too, in block %d", r.BlockNumber)
		}
	}
	b, err := e.Batch(ctx, 1)
	if err != nil || b.Root != ([32]byte{1}) {
		t.Fatalf("batch 1 on chain: %+v, %v", b, err)
	}
	if next, err := e.NextBatchID(ctx); err != nil || next != 2 {
		t.Fatalf("next batch id %d, %v: want 2 (committed once)", next, err)
	}
}

// syncBuffer is a log sink the chain's goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNodeMinimumTipAboveItsSuggestion: a node whose transaction pool
// takes nothing under a minimum tip far above the tip it suggests (an
// outside re-check's geth) gets that minimum: a commit sent after the
// minimum was raised pays it at once, and one pending when it was raised
// (the pool drops it) is sent again at it after BumpAfter, not at a
// quarter more than before, refused again and again.
func TestNodeMinimumTipAboveItsSuggestion(t *testing.T) {
	ctx := testContext(t)
	var logs syncBuffer
	var first atomic.Value
	var raise func()
	e := openTest(t, t.TempDir(), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), WithAfterSend(func(h common.Hash) {
		if first.Load() == nil {
			first.Store(h)
			if raise != nil {
				raise()
			}
		}
	}))
	if _, err := e.OperatorAccount(ctx, "metro"); err != nil {
		t.Fatal(err)
	}
	tip, err := e.settlement.eth.SuggestGasTipCap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prevBump, prevWait := BumpAfter, MineWait
	BumpAfter, MineWait = 300*time.Millisecond, 30*time.Second
	t.Cleanup(func() { BumpAfter, MineWait = prevBump, prevWait })
	setMinimum := func(min *big.Int) {
		e.backend.TxPool().SetGasTip(min)
		if err := e.backend.Miner().SetGasTip(min); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(id uint64) Receipt {
		t.Helper()
		now := time.Now()
		rcpt, err := e.CommitBatch(ctx, Batch{ID: id, Root: [32]byte{byte(id)}, EventCount: 1, PeriodStart: now, PeriodEnd: now,
			Amounts: []OperatorAmount{{Operator: "metro", Net: 250}}})
		if err != nil {
			t.Fatalf("commit %d: %v\n%s", id, err, logs.String())
		}
		return rcpt
	}
	paid := func(r Receipt) *big.Int {
		t.Helper()
		tx, _, err := e.settlement.eth.TransactionByHash(ctx, r.TxHash)
		if err != nil {
			t.Fatal(err)
		}
		return tx.GasTipCap()
	}

	// Raised before the send: paid at once.
	minA := new(big.Int).Mul(tip, big.NewInt(1000))
	setMinimum(minA)
	if got := paid(commit(1)); got.Cmp(minA) < 0 {
		t.Errorf("commit under a minimum tip of %s paid %s", minA, got)
	}

	// Raised while the commit is pending: the pool drops it, and the
	// replacement pays the new minimum. The dev chain seals a transaction
	// as it arrives, so one may be mined before the raise: then the pool
	// had nothing to drop and the commit is tried again (the test failed
	// one run in eight or so on that race).
	minB := new(big.Int).Mul(minA, big.NewInt(1000))
	id := uint64(2)
	for ; ; id++ {
		setMinimum(tip)
		first = atomic.Value{}
		raise = func() { setMinimum(minB) }
		r := commit(id)
		sent, _ := first.Load().(common.Hash)
		if r.TxHash == sent {
			if got := paid(r); got.Cmp(tip) < 0 {
				t.Fatalf("the first transaction, mined before the raise, paid %s under the tip %s", got, tip)
			}
			if id == 11 {
				t.Fatal("every first transaction was mined before the minimum was raised: the drop was never exercised")
			}
			continue
		}
		if got := paid(r); got.Cmp(minB) < 0 {
			t.Errorf("replacement under a minimum tip of %s paid %s", minB, got)
		}
		break
	}
	if next, err := e.NextBatchID(ctx); err != nil || next != id+1 {
		t.Fatalf("next batch id %d, %v: want %d (each committed once)", next, err, id+1)
	}
}
