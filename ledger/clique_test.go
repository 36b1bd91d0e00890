package ledger_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"

	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/ledger/merkle"
	"github.com/faregate/faregate/ledger/settlementabi"
)

// cliqueEvents is the number of events (Merkle leaves) per test batch.
const cliqueEvents = 100

// cliqueBatch builds batch id for the given operators: cliqueEvents event
// values, whole-second UTC period bounds (what the chain stores) and nets that
// sum to zero.
func cliqueBatch(id uint64, operators []string) (ledger.Batch, *merkle.Tree) {
	values := make([][32]byte, cliqueEvents)
	for i := range values {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], id)
		binary.BigEndian.PutUint64(b[8:], uint64(i))
		values[i] = sha256.Sum256(b[:])
	}
	tree, err := merkle.New(values)
	if err != nil {
		panic(err)
	}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id-1) * 10 * time.Minute)
	b := ledger.Batch{ID: id, Root: tree.Root(), EventCount: cliqueEvents, PeriodStart: start, PeriodEnd: start.Add(10 * time.Minute)}
	var sum int64
	for i, op := range operators {
		net := int64((i+1)*100+int(id)) * int64(1-2*(i%2))
		if i == len(operators)-1 {
			net = -sum
		}
		sum += net
		b.Amounts = append(b.Amounts, ledger.OperatorAmount{Operator: op, Net: net})
	}
	return b, tree
}

func operatorIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out // ascending, as the contract wants them
}

// sameBatch compares what was sent with what a node returns.
func sameBatch(got, want ledger.Batch) bool {
	return got.ID == want.ID && got.Root == want.Root && got.EventCount == want.EventCount &&
		got.PeriodStart.Equal(want.PeriodStart) && got.PeriodEnd.Equal(want.PeriodEnd) &&
		slices.Equal(got.Amounts, want.Amounts)
}

type sentBatch struct {
	batch   ledger.Batch
	tree    *merkle.Tree
	receipt ledger.Receipt
	wall    time.Duration
	phase   string
}

// TestCliqueThreeSigners runs the Settlement contract on a real 3-signer
// Clique proof-of-authority network (geth v1.13.15 processes on loopback):
// it deploys and commits through node 1, stops signer 3 and keeps committing
// (2 of 3 signers still seal, taking signer 3's turns out of turn), restarts
// it, waits until it has caught up, and then checks that every node returns
// the same batches, receipts and blocks, and verifies proofs on each.
func TestCliqueThreeSigners(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cn := startCliqueNet(ctx, t, 3)
	n1, n3 := cn.nodes[0], cn.nodes[2]
	t.Logf("3 signers peered and sealing after %s", time.Since(began).Round(time.Millisecond))

	keyFile := writeKeyFile(t, t.TempDir(), cn.funded)
	c, err := ledger.Dial(ctx, n1.url(), keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The deploying key is admin and clearing house: it admits the operators
	// (one transaction each through the API, two blocks apiece) before any
	// batch may settle them.
	operators := operatorIDs("op", 10)
	accounts := make(map[string]common.Address)
	admin := c.Account(cn.funded)
	t0 := time.Now()
	for _, op := range operators {
		accounts[op] = crypto.PubkeyToAddress(mustKey(t).PublicKey)
		if _, err := admin.AdmitOperator(ctx, op, accounts[op]); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("admitted %d operators in %s", len(operators), time.Since(t0).Round(time.Millisecond))

	var sent []sentBatch
	commit := func(phase string, n int) {
		t.Helper()
		for range n {
			id, err := c.NextBatchID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			b, tree := cliqueBatch(id, operators)
			t0 := time.Now()
			rcpt, err := c.CommitBatch(ctx, b)
			if err != nil {
				t.Fatalf("%s: %v", phase, err)
			}
			s := sentBatch{batch: b, tree: tree, receipt: rcpt, wall: time.Since(t0), phase: phase}
			sent = append(sent, s)
			t.Logf("%s: batch %d in block %d, %d gas, %s", phase, id, rcpt.BlockNumber, rcpt.GasUsed, s.wall.Round(time.Millisecond))
		}
	}

	commit("3 signers", 3)

	// Stop signer 3. A block it sealed just before exiting may reach node 1 a
	// moment later, so its downtime counts from the second block after.
	if err := n3.stop(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := n1.blockNumber(ctx)
	downFrom := stoppedAt + 2
	commit("signer 3 stopped", 4)
	// Cover at least two of signer 3's turns.
	cn.waitAllAt(ctx, downFrom+2*uint64(len(cn.signers)))
	downTo := n1.blockNumber(ctx)
	outOfTurn := 0
	for n := downFrom; n <= downTo; n++ {
		h := n1.header(ctx, n)
		sealer := n1.sealer(ctx, n)
		if sealer == n3.signer {
			t.Fatalf("block %d sealed by signer 3 while it was stopped", n)
		}
		if cn.inTurn(n) == n3.signer {
			if h.Difficulty.ToInt().Int64() != 1 {
				t.Fatalf("block %d: signer 3's turn, sealed by %s with difficulty %s, want 1 (out of turn)", n, sealer, h.Difficulty.ToInt())
			}
			outOfTurn++
		}
	}
	if outOfTurn == 0 {
		t.Fatalf("blocks %d-%d: none was signer 3's turn", downFrom, downTo)
	}
	t.Logf("signer 3 stopped: blocks %d-%d sealed by signers 1 and 2, %d of them in signer 3's turn (out of turn)", downFrom, downTo, outOfTurn)

	// Restart signer 3 on its data dir; it must catch up and seal again.
	restart := time.Now()
	n3.start(ctx)
	started := time.Since(restart)
	cn.rejoin(ctx, n3)
	peered := time.Since(restart)
	head := n1.blockNumber(ctx)
	cn.waitAllAt(ctx, head)
	t.Logf("signer 3 restarted (RPC up after %s, peered after %s), caught up from block %d to %d after %s",
		started.Round(time.Millisecond), peered.Round(time.Millisecond), stoppedAt, head, time.Since(restart).Round(time.Millisecond))
	commit("signer 3 restarted", 2)
	resealed := uint64(0)
	cn.waitFor(ctx, 30*time.Second, "a block sealed by the restarted signer 3", func() bool {
		for n := head + 1; n <= n1.blockNumber(ctx); n++ {
			if n1.sealer(ctx, n) == n3.signer {
				resealed = n
				return true
			}
		}
		return false
	})
	t.Logf("signer 3 sealed block %d after its restart", resealed)

	// Agreement: wait until every node holds the last batch's block and two
	// more (a Clique fork a block deep resolves by then), then compare.
	last := sent[len(sent)-1].receipt.BlockNumber
	cn.waitAllAt(ctx, max(last, resealed)+2)
	contract := c.ContractAddress().Hex()
	clients := make([]*ledger.Client, len(cn.nodes))
	for i, nd := range cn.nodes {
		cl, err := ledger.Dial(ctx, nd.url(), keyFile, contract)
		if err != nil {
			t.Fatalf("%s: %v", nd.name, err)
		}
		defer cl.Close()
		clients[i] = cl
	}
	for _, s := range sent {
		id := s.batch.ID
		var first ledger.Batch
		var firstRcpt rpcReceipt
		var firstBlock cliqueHeader
		for i, nd := range cn.nodes {
			got, err := clients[i].Batch(ctx, id)
			if err != nil {
				t.Fatalf("%s: %v", nd.name, err)
			}
			if !sameBatch(got, s.batch) {
				t.Fatalf("%s: batch %d is %+v, committed %+v", nd.name, id, got, s.batch)
			}
			var rcpt rpcReceipt
			nd.call(ctx, &rcpt, "eth_getTransactionReceipt", common.Hash(s.receipt.TxHash))
			if rcpt.Status != 1 {
				t.Fatalf("%s: batch %d's transaction %x has status %d", nd.name, id, s.receipt.TxHash, rcpt.Status)
			}
			block := nd.header(ctx, uint64(rcpt.BlockNumber))
			if block.Hash != rcpt.BlockHash {
				t.Fatalf("%s: batch %d's receipt names block %s, block %d is %s", nd.name, id, rcpt.BlockHash, rcpt.BlockNumber, block.Hash)
			}
			if i == 0 {
				first, firstRcpt, firstBlock = got, rcpt, block
			} else {
				if !reflect.DeepEqual(got, first) {
					t.Fatalf("batch %d: %s returns %+v, %s %+v", id, nd.name, got, cn.nodes[0].name, first)
				}
				if rcpt != firstRcpt || block.Hash != firstBlock.Hash {
					t.Fatalf("batch %d: %s has it in block %d %s, %s in block %d %s", id,
						nd.name, rcpt.BlockNumber, rcpt.BlockHash, cn.nodes[0].name, firstRcpt.BlockNumber, firstRcpt.BlockHash)
				}
			}
			// Each node's contract proves an event of the batch, and refuses a
			// value that is not in it.
			leaf := int(id) % s.tree.Len()
			proof, err := s.tree.Proof(leaf)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := clients[i].VerifyInclusion(ctx, id, s.tree.Value(leaf), proof); err != nil || !ok {
				t.Fatalf("%s: batch %d: proof of event %d: %v, %v", nd.name, id, leaf, ok, err)
			}
			if ok, err := clients[i].VerifyInclusion(ctx, id, sha256.Sum256([]byte("not an event")), proof); err != nil || ok {
				t.Fatalf("%s: batch %d: a value not in the batch verified: %v, %v", nd.name, id, ok, err)
			}
		}
		if s.receipt.BlockNumber != uint64(firstRcpt.BlockNumber) {
			t.Logf("batch %d: committed in block %d, now in block %d (a Clique fork was resolved)", id, s.receipt.BlockNumber, firstRcpt.BlockNumber)
		}
	}
	for i, nd := range cn.nodes {
		next, err := clients[i].NextBatchID(ctx)
		if err != nil || next != uint64(len(sent))+1 {
			t.Fatalf("%s: next batch id %d, %v; want %d", nd.name, next, err, len(sent)+1)
		}
		for _, op := range operators {
			var want int64
			for _, s := range sent {
				for _, a := range s.batch.Amounts {
					if a.Operator == op {
						want += a.Net
					}
				}
			}
			got, err := clients[i].Operator(ctx, op)
			if err != nil || got.Account != accounts[op] || got.Balance != want {
				t.Fatalf("%s: operator %s is %+v, %v; want account %s, balance %d", nd.name, op, got, err, accounts[op], want)
			}
		}
	}

	var walls []time.Duration
	for _, s := range sent {
		walls = append(walls, s.wall)
	}
	var size int64
	for _, nd := range cn.nodes {
		size += dirSize(nd.dir)
	}
	t.Logf("%d batches agree on 3 nodes; median commit %s; data dirs %.1f MB; %s in all",
		len(sent), median(walls).Round(time.Millisecond), float64(size)/1e6, time.Since(began).Round(time.Millisecond))
}

// rpcReceipt is the part of a receipt the test compares between nodes.
type rpcReceipt struct {
	Status      hexutil.Uint64 `json:"status"`
	BlockNumber hexutil.Uint64 `json:"blockNumber"`
	BlockHash   common.Hash    `json:"blockHash"`
	GasUsed     hexutil.Uint64 `json:"gasUsed"`
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkCliqueCommitBatch measures CommitBatch on the 3-signer Clique
// network, from call to receipt, for 10 and 100 operators: gas/op and the
// median wall time (ms-median/op). With a 1 s block period the wall time is
// mostly waiting for blocks. Each commit takes seconds, so run it with a fixed
// count: go test -run '^$' -bench CliqueCommitBatch -benchtime 20x ./ledger/
func BenchmarkCliqueCommitBatch(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cn := startCliqueNet(ctx, b, 3)
	keyFile := writeKeyFile(b, b.TempDir(), cn.funded)
	c, err := ledger.Dial(ctx, cn.nodes[0].url(), keyFile, "")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// Admitted once here: with -count, the sub-benchmarks run again on the
	// same network.
	sets := map[int][]string{10: operatorIDs("b10", 10), 100: operatorIDs("b100", 100)}
	admitOperatorsAtOnce(ctx, b, cn.nodes[0].url(), cn.funded, c.ContractAddress(), append(slices.Clone(sets[10]), sets[100]...))
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("operators=%d", n), func(b *testing.B) {
			commit := func() (ledger.Receipt, time.Duration) {
				id, err := c.NextBatchID(ctx)
				if err != nil {
					b.Fatal(err)
				}
				batch, _ := cliqueBatch(id, sets[n])
				t0 := time.Now()
				rcpt, err := c.CommitBatch(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				return rcpt, time.Since(t0)
			}
			commit() // warm-up, not counted
			var gas uint64
			var walls []time.Duration
			for b.Loop() {
				rcpt, wall := commit()
				gas += rcpt.GasUsed
				walls = append(walls, wall)
			}
			b.ReportMetric(float64(gas)/float64(len(walls)), "gas/op")
			b.ReportMetric(float64(median(walls))/1e6, "ms-median/op")
		})
	}
}

// admitOperatorsAtOnce admits operators with fresh accounts for the
// benchmark: it signs the admin's admitOperator transactions with consecutive
// nonces, sends them all, then waits for every receipt, so a hundred take a
// block or two instead of two blocks each through Account.AdmitOperator.
func admitOperatorsAtOnce(ctx context.Context, t testing.TB, rpcURL string, adminKey *ecdsa.PrivateKey, contract common.Address, operators []string) {
	t.Helper()
	eth, err := ethclient.DialContext(ctx, rpcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer eth.Close()
	chainID, err := eth.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from := crypto.PubkeyToAddress(adminKey.PublicKey)
	nonce, err := eth.PendingNonceAt(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	head, err := eth.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tip := big.NewInt(params.GWei) // geth 1.13's default --miner.gasprice
	feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), tip)
	abi := settlementabi.NewSettlement()
	signer := types.LatestSignerForChainID(chainID)
	var hashes []common.Hash
	for i, id := range operators {
		op, err := ledger.EncodeOperator(id)
		if err != nil {
			t.Fatal(err)
		}
		data := abi.PackAdmitOperator(op, crypto.PubkeyToAddress(mustKey(t).PublicKey))
		gas, err := eth.EstimateGas(ctx, ethereum.CallMsg{From: from, To: &contract, Data: data})
		if err != nil {
			t.Fatalf("admit %s: estimate gas: %v", id, err)
		}
		tx, err := types.SignNewTx(adminKey, signer, &types.DynamicFeeTx{
			ChainID: chainID, Nonce: nonce + uint64(i), To: &contract, Gas: gas,
			GasTipCap: tip, GasFeeCap: feeCap, Data: data,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := eth.SendTransaction(ctx, tx); err != nil {
			t.Fatalf("admit %s: %v", id, err)
		}
		hashes = append(hashes, tx.Hash())
	}
	for i, h := range hashes {
		for {
			rcpt, err := eth.TransactionReceipt(ctx, h)
			if err == nil {
				if rcpt.Status != types.ReceiptStatusSuccessful {
					t.Fatalf("admit %s: transaction %s failed", operators[i], h)
				}
				break
			}
			if !errors.Is(err, ethereum.NotFound) {
				t.Fatalf("admit %s: %v", operators[i], err)
			}
			select {
			case <-ctx.Done():
				t.Fatalf("admit %s: %v", operators[i], ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}
