package ledger

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"

	"github.com/faregate/faregate/ledger/merkle"
	"github.com/faregate/faregate/ledger/settlementabi"
)

// childEnv selects a child-process role for the test binary (see TestMain):
// the kill -9 test re-executes itself so that it can SIGKILL a real process.
const childEnv = "FAREGATE_LEDGER_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "commit-forever":
		os.Exit(commitForever(os.Getenv("FAREGATE_LEDGER_TEST_DIR")))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, os.Getenv(childEnv))
		os.Exit(2)
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openTest(t testing.TB, dir string, opts ...EmbeddedOption) *Embedded {
	t.Helper()
	start := time.Now()
	// go-ethereum's warnings go to the test's output, not stderr, so they do
	// not interleave with benchmark result lines.
	opts = append([]EmbeddedOption{WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil)))}, opts...)
	t.Cleanup(func() { routeGethLog(slog.Default()) }) // runs after Close below
	e, err := OpenEmbedded(testContext(t), dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("OpenEmbedded took %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { e.Close() })
	if err := admitTestOperators(testContext(t), e.Admin(), 10); err != nil {
		t.Fatal(err)
	}
	return e
}

// admitTestOperators admits op-000 .. op-<n-1> (testBatch's operators), each
// with a fresh account, skipping those already admitted.
func admitTestOperators(ctx context.Context, admin *Account, n int) error {
	for i := range n {
		id := fmt.Sprintf("op-%03d", i)
		if _, err := admin.s.Operator(ctx, id); err == nil {
			continue
		}
		key, _ := crypto.GenerateKey()
		if _, err := admin.AdmitOperator(ctx, id, crypto.PubkeyToAddress(key.PublicKey)); err != nil {
			return err
		}
	}
	return nil
}

// eventValues stands in for a period's event ids: n distinct bytes32 values.
func eventValues(batch uint64, n int) [][32]byte {
	out := make([][32]byte, n)
	for i := range out {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], batch)
		binary.BigEndian.PutUint64(b[8:], uint64(i))
		out[i] = sha256.Sum256(b[:])
	}
	return out
}

// testBatch builds batch id with nEvents events and nOps operators whose nets
// sum to zero, as clearing's would.
func testBatch(id uint64, nEvents, nOps int) (Batch, *merkle.Tree) {
	tree, err := merkle.New(eventValues(id, nEvents))
	if err != nil {
		panic(err) // only for nEvents == 0
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id-1) * time.Hour)
	b := Batch{
		ID:          id,
		Root:        tree.Root(),
		EventCount:  uint64(nEvents),
		PeriodStart: start,
		PeriodEnd:   start.Add(time.Hour),
	}
	var sum int64
	for i := range nOps {
		net := int64((i+1)*1000+int(id)) * int64(1-2*(i%2))
		if i == nOps-1 {
			net = -sum
		}
		sum += net
		b.Amounts = append(b.Amounts, OperatorAmount{Operator: fmt.Sprintf("op-%03d", i), Net: net})
	}
	return b, tree
}

func TestOperatorEncoding(t *testing.T) {
	for _, id := range []string{"a", "metro-lyon", strings.Repeat("x", 32), "~!"} {
		b, err := EncodeOperator(id)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if got := DecodeOperator(b); got != id {
			t.Fatalf("round trip %q -> %q", id, got)
		}
	}
	for _, id := range []string{"", strings.Repeat("x", 33), "a b", "a\x00", "é"} {
		if _, err := EncodeOperator(id); !errors.Is(err, ErrInvalidBatch) {
			t.Fatalf("%q: err %v, want ErrInvalidBatch", id, err)
		}
	}
	// Order of the bytes32 forms equals order of the strings (the contract
	// requires ascending operators; Go sorts strings).
	a, _ := EncodeOperator("ab")
	b, _ := EncodeOperator("abc")
	if string(a[:]) >= string(b[:]) {
		t.Fatal("prefix does not sort first")
	}
}

func TestEncodeBatchRejects(t *testing.T) {
	good, _ := testBatch(1, 3, 3)
	cases := map[string]func(*Batch){
		"zero id":        func(b *Batch) { b.ID = 0 },
		"end before":     func(b *Batch) { b.PeriodEnd = b.PeriodStart.Add(-time.Second) },
		"before 1970":    func(b *Batch) { b.PeriodStart = time.Unix(-10, 0) },
		"duplicate":      func(b *Batch) { b.Amounts = append(b.Amounts, b.Amounts[0]) },
		"bad operator":   func(b *Batch) { b.Amounts[1].Operator = "no spaces" },
		"empty operator": func(b *Batch) { b.Amounts[1].Operator = "" },
	}
	for name, mutate := range cases {
		b := good
		b.Amounts = append([]OperatorAmount(nil), good.Amounts...)
		mutate(&b)
		if _, err := encodeBatch(b); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: err %v, want ErrInvalidBatch", name, err)
		}
	}
}

func TestCommitReadBack(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir())
	if e.ContractAddress() != crypto.CreateAddress(e.Admin().Address(), 0) {
		t.Fatalf("contract %s is not the admin's first deployment", e.ContractAddress())
	}
	if admin, ch, err := e.Roles(ctx); err != nil || admin != e.Admin().Address() || ch != e.ClearingHouse() || admin == ch {
		t.Fatalf("roles = admin %s, clearing house %s, %v; want %s and %s", admin, ch, err, e.Admin().Address(), e.ClearingHouse())
	}
	if next, err := e.NextBatchID(ctx); err != nil || next != 1 {
		t.Fatalf("NextBatchID = %d, %v; want 1", next, err)
	}
	var want []Batch
	receipts := map[uint64]Receipt{}
	for id := uint64(1); id <= 3; id++ {
		b, _ := testBatch(id, 10*int(id), 3+int(id))
		// Unsorted input is accepted; Batch returns it sorted.
		b.Amounts[0], b.Amounts[len(b.Amounts)-1] = b.Amounts[len(b.Amounts)-1], b.Amounts[0]
		start := time.Now()
		rcpt, err := e.CommitBatch(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("batch %d: block %d, gas %d, %s", id, rcpt.BlockNumber, rcpt.GasUsed, time.Since(start).Round(time.Microsecond))
		if rcpt.GasUsed == 0 || rcpt.BlockNumber == 0 || rcpt.TxHash == ([32]byte{}) {
			t.Fatalf("receipt %+v", rcpt)
		}
		b.Amounts[0], b.Amounts[len(b.Amounts)-1] = b.Amounts[len(b.Amounts)-1], b.Amounts[0]
		want = append(want, b)
		receipts[id] = rcpt
	}
	for _, w := range want {
		got, err := e.Batch(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(withoutCommit(got), w) {
			t.Fatalf("batch %d read back\n got %+v\nwant %+v", w.ID, got, w)
		}
		if r := receipts[w.ID]; got.BlockNumber != r.BlockNumber || got.TxHash != r.TxHash {
			t.Fatalf("batch %d read back committed in block %d, tx %x; the receipt says %d, %x", w.ID, got.BlockNumber, got.TxHash, r.BlockNumber, r.TxHash)
		}
		checkCommittedAt(t, e, got)
	}
	if next, err := e.NextBatchID(ctx); err != nil || next != 4 {
		t.Fatalf("NextBatchID = %d, %v; want 4", next, err)
	}
	// Cumulative balances on chain: op-000 appears in all three batches.
	var sum int64
	for _, w := range want {
		sum += w.Amounts[0].Net
	}
	if bal, err := e.OperatorBalance(ctx, "op-000"); err != nil || bal != sum {
		t.Fatalf("balance of op-000 = %d, %v; want %d", bal, err, sum)
	}

	// Rejections, detected before sending.
	dup, _ := testBatch(2, 5, 2)
	if _, err := e.CommitBatch(ctx, dup); !errors.Is(err, ErrBatchExists) {
		t.Fatalf("duplicate id: %v, want ErrBatchExists", err)
	}
	skip, _ := testBatch(5, 5, 2)
	if _, err := e.CommitBatch(ctx, skip); !errors.Is(err, ErrBatchOutOfOrder) {
		t.Fatalf("skipped id: %v, want ErrBatchOutOfOrder", err)
	}
	if _, err := e.Batch(ctx, 4); !errors.Is(err, ErrBatchNotFound) {
		t.Fatalf("Batch(4): %v, want ErrBatchNotFound", err)
	}
	if _, err := e.Batch(ctx, 0); !errors.Is(err, ErrBatchNotFound) {
		t.Fatalf("Batch(0): %v, want ErrBatchNotFound", err)
	}

	// The same rejections from the contract itself: send without the pre-check
	// and check the revert maps to the sentinel.
	for _, c := range []struct {
		b    Batch
		want error
	}{{dup, ErrBatchExists}, {skip, ErrBatchOutOfOrder}} {
		_, err := sendRaw(ctx, e.settlement, c.b, 0)
		if !errors.Is(err, c.want) {
			t.Fatalf("contract revert for batch %d: %v, want %v", c.b.ID, err, c.want)
		}
		t.Logf("contract revert: %v", err)
	}
	// Unsorted operators reach the contract only through the raw path.
	bad, _ := testBatch(4, 5, 3)
	e4, _ := encodeBatch(bad)
	e4.operators[0], e4.operators[1] = e4.operators[1], e4.operators[0]
	if _, err := sendEncoded(ctx, e.settlement, e4, 0); !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("unsorted operators: %v, want ErrInvalidBatch", err)
	}
}

// sendRaw sends commitBatch without CommitBatch's pre-checks. gasLimit 0 lets
// the node estimate (a revert then shows as an estimation error with revert
// data); a fixed limit sends the transaction regardless.
func sendRaw(ctx context.Context, s *settlement, b Batch, gasLimit uint64) (*types.Receipt, error) {
	e, err := encodeBatch(b)
	if err != nil {
		return nil, err
	}
	return sendEncoded(ctx, s, e, gasLimit)
}

func sendEncoded(ctx context.Context, s *settlement, e encodedBatch, gasLimit uint64) (*types.Receipt, error) {
	nets := make([]*big.Int, len(e.nets))
	for i, n := range e.nets {
		nets[i] = big.NewInt(n)
	}
	opts := s.transactOpts(ctx)
	opts.GasLimit = gasLimit
	tx, err := bind.Transact(s.contract, opts, s.abi.PackCommitBatch(e.id, e.root, e.eventCount, e.periodStart, e.periodEnd, e.operators, nets))
	if err != nil {
		return nil, mapRevert(err)
	}
	return s.waitMined(ctx, tx)
}

func TestNotClearingHouse(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir())
	otherKey, _ := crypto.GenerateKey()
	other := crypto.PubkeyToAddress(otherKey.PublicKey)
	if err := e.Fund(ctx, other, big.NewInt(params.Ether)); err != nil {
		t.Fatal(err)
	}
	intruder := newSettlement(e.client, otherKey, e.chainID, e.log, 5*time.Millisecond)
	if err := intruder.bindTo(ctx, e.ContractAddress()); err != nil {
		t.Fatal(err)
	}
	b, _ := testBatch(1, 4, 2)
	// Through the normal path the node's gas estimate already hits the revert.
	if _, err := intruder.commitBatch(ctx, b); !errors.Is(err, ErrNotClearingHouse) {
		t.Fatalf("commit from another key: %v, want ErrNotClearingHouse", err)
	}
	// Forced on chain with a fixed gas limit, the transaction is mined and fails.
	rcpt, err := sendRaw(ctx, intruder, b, 300_000)
	if err != nil {
		t.Fatal(err)
	}
	if rcpt.Status != types.ReceiptStatusFailed {
		t.Fatalf("transaction from another key succeeded: status %d", rcpt.Status)
	}
	if next, err := e.NextBatchID(ctx); err != nil || next != 1 {
		t.Fatalf("NextBatchID after rejected commit = %d, %v; want 1", next, err)
	}
	// The clearing house can still commit id 1.
	if _, err := e.CommitBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func TestReopen(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	e := openTest(t, dir)
	var want []Batch
	for id := uint64(1); id <= 2; id++ {
		b, _ := testBatch(id, 7, 4)
		if _, err := e.CommitBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
	}
	addr := e.ContractAddress()
	// The node locks its data dir: a second opener fails instead of corrupting it.
	if e2, err := OpenEmbedded(ctx, dir); err == nil {
		e2.Close()
		t.Fatal("opened a data dir that is already open")
	} else {
		t.Logf("second open: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.NextBatchID(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}

	e2 := openTest(t, dir)
	if e2.ContractAddress() != addr {
		t.Fatalf("contract moved from %s to %s", addr, e2.ContractAddress())
	}
	for _, w := range want {
		got, err := e2.Batch(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(withoutCommit(got), w) {
			t.Fatalf("batch %d after reopen\n got %+v\nwant %+v", w.ID, got, w)
		}
	}
	b3, _ := testBatch(3, 7, 4)
	if _, err := e2.CommitBatch(ctx, b3); err != nil {
		t.Fatal(err)
	}
}

func TestInclusionProof(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir())
	b, tree := testBatch(1, 1000, 3)
	if _, err := e.CommitBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 499, 999} {
		value := tree.Value(i)
		proof, err := tree.Proof(i)
		if err != nil {
			t.Fatal(err)
		}
		if !merkle.Verify(b.Root, value, proof) {
			t.Fatalf("event %d: off-chain verify failed", i)
		}
		ok, err := e.VerifyInclusion(ctx, 1, value, proof)
		if err != nil || !ok {
			t.Fatalf("event %d: on-chain verify = %v, %v", i, ok, err)
		}

		// Wrong proofs fail both ways.
		wrong := append([][32]byte(nil), proof...)
		wrong[0][31] ^= 1
		other := eventValues(99, 1)[0]
		for name, c := range map[string]struct {
			value [32]byte
			proof [][32]byte
		}{
			"tampered proof":  {value, wrong},
			"truncated proof": {value, proof[:len(proof)-1]},
			"absent value":    {other, proof},
		} {
			if merkle.Verify(b.Root, c.value, c.proof) {
				t.Fatalf("event %d, %s: off-chain verify passed", i, name)
			}
			ok, err := e.VerifyInclusion(ctx, 1, c.value, c.proof)
			if err != nil || ok {
				t.Fatalf("event %d, %s: on-chain verify = %v, %v; want false", i, name, ok, err)
			}
		}
	}
	proof, _ := tree.Proof(0)
	if _, err := e.VerifyInclusion(ctx, 2, tree.Value(0), proof); !errors.Is(err, ErrBatchNotFound) {
		t.Fatalf("verify in unknown batch: %v, want ErrBatchNotFound", err)
	}
}

// TestKill9 runs the embedded chain in a child process that commits batches
// and prints each id once CommitBatch has returned; the parent SIGKILLs it right
// after a report and then finds every reported batch on reopening the dir.
// Two rounds: the second starts from a chain that was itself recovered.
func TestKill9(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	var reported uint64
	for round := 1; round <= 2; round++ {
		killAt := reported + 4 // kill after this many batches in total
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=commit-forever", "FAREGATE_LEDGER_TEST_DIR="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		killed := false
		for sc.Scan() {
			id, ok := strings.CutPrefix(sc.Text(), "committed ")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(id, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			reported = max(reported, n)
			if !killed && n >= killAt {
				// SIGKILL while the child goes straight on with the next commit.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child exited before the kill: %v", round, err)
		}
		t.Logf("round %d: child killed (%v) after reporting batch %d", round, err, reported)

		e, err := OpenEmbedded(ctx, dir)
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		next, err := e.NextBatchID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if next <= reported {
			t.Fatalf("round %d: next batch id %d after kill, but batch %d was reported committed", round, next, reported)
		}
		for id := uint64(1); id <= reported; id++ {
			want, _ := testBatch(id, 16, 5)
			got, err := e.Batch(ctx, id)
			if err != nil {
				t.Fatalf("round %d: batch %d lost: %v", round, id, err)
			}
			if !reflect.DeepEqual(withoutCommit(got), want) {
				t.Fatalf("round %d: batch %d\n got %+v\nwant %+v", round, id, got, want)
			}
		}
		t.Logf("round %d: all %d reported batches present, next id %d", round, reported, next)
		reported = next - 1 // the child may have finished one more before dying
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// commitForever is the kill -9 child: it commits batches in order (resuming
// at NextBatchID) and reports each on stdout after CommitBatch returns.
func commitForever(dir string) int {
	ctx := context.Background()
	e, err := OpenEmbedded(ctx, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	if err := admitTestOperators(ctx, e.Admin(), 5); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	next, err := e.NextBatchID(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	for id := next; id < next+1000; id++ {
		b, _ := testBatch(id, 16, 5)
		if _, err := e.CommitBatch(ctx, b); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		// os.Stdout is unbuffered: the line is in the pipe when Write returns.
		fmt.Fprintf(os.Stdout, "committed %d\n", id)
	}
	return 0
}

func TestDial(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	url := e.HTTPEndpoint()
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("HTTPEndpoint = %q", url)
	}

	// A separate key, funded by the clearing house, written as a key file.
	key, keyFile := fundedKeyFile(t, e)

	// contract "": Dial deploys its own Settlement, with the key as clearing house.
	c, err := Dial(ctx, url, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ContractAddress() == e.ContractAddress() {
		t.Fatal("Dial with no contract did not deploy a new one")
	}
	// The deploying key is also the new contract's admin.
	if err := admitTestOperators(ctx, c.Account(key), 6); err != nil {
		t.Fatal(err)
	}
	var want []Batch
	for id := uint64(1); id <= 2; id++ {
		b, tree := testBatch(id, 50, 6)
		rcpt, err := c.CommitBatch(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("over HTTP: batch %d block %d gas %d", id, rcpt.BlockNumber, rcpt.GasUsed)
		want = append(want, b)
		proof, _ := tree.Proof(3)
		if ok, err := c.VerifyInclusion(ctx, id, tree.Value(3), proof); err != nil || !ok {
			t.Fatalf("verify over HTTP = %v, %v", ok, err)
		}
	}
	dup, _ := testBatch(1, 5, 2)
	if _, err := c.CommitBatch(ctx, dup); !errors.Is(err, ErrBatchExists) {
		t.Fatalf("duplicate over HTTP: %v, want ErrBatchExists", err)
	}

	// A second client bound to the now existing contract reads the same batches.
	c2, err := Dial(ctx, url, keyFile, c.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, w := range want {
		got, err := c2.Batch(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(withoutCommit(got), w) {
			t.Fatalf("batch %d over HTTP\n got %+v\nwant %+v", w.ID, got, w)
		}
		checkCommittedAt(t, e, got)
	}

	// The terminal registry over HTTP: an operator registers through one
	// client, another client reads the change from the logs.
	opKey, _ := crypto.GenerateKey()
	opAddr := crypto.PubkeyToAddress(opKey.PublicKey)
	if err := e.Fund(ctx, opAddr, big.NewInt(params.Ether)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Account(key).AdmitOperator(ctx, "tram", opAddr); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Account(opKey).RegisterTerminals(ctx, []TerminalRegistration{{ID: "tram-7", Stop: "harbour", PublicKey: [32]byte{7}, KeyProof: testKeyProof}}); err != nil {
		t.Fatal(err)
	}
	read, err := c2.TerminalChanges(ctx, 0)
	changes := read.Changes
	if err != nil || len(changes) != 1 || changes[0].ID != "tram-7" || changes[0].Operator != "tram" || changes[0].Stop != "harbour" {
		t.Fatalf("terminal changes over HTTP: %+v, %v", changes, err)
	}

	// The separate key is not the clearing house of the embedded chain's own
	// contract: the contract refuses its commits.
	c3, err := Dial(ctx, url, keyFile, e.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	b1, _ := testBatch(1, 5, 2)
	if _, err := c3.CommitBatch(ctx, b1); !errors.Is(err, ErrNotClearingHouse) {
		t.Fatalf("commit to another clearing house's contract: %v, want ErrNotClearingHouse", err)
	}

	// An admitted operator whose account holds no ether is told which
	// account to fund, and nothing is sent.
	poorKey, _ := crypto.GenerateKey()
	poorAddr := crypto.PubkeyToAddress(poorKey.PublicKey)
	if _, err := c.Account(key).AdmitOperator(ctx, "ferry", poorAddr); err != nil {
		t.Fatal(err)
	}
	_, err = c.Account(poorKey).RegisterTerminals(ctx, []TerminalRegistration{{ID: "ferry-1", Stop: "pier", PublicKey: [32]byte{9}, KeyProof: testKeyProof}})
	if !errors.Is(err, ErrNoGasFunds) || !strings.Contains(err.Error(), poorAddr.Hex()) {
		t.Fatalf("a transaction from an account without ether: %v, want ErrNoGasFunds naming %s", err, poorAddr.Hex())
	}
	// An account run low (a few wei: the node words it otherwise) too.
	if err := e.Fund(ctx, poorAddr, big.NewInt(1000)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Account(poorKey).RegisterTerminals(ctx, []TerminalRegistration{{ID: "ferry-1", Stop: "pier", PublicKey: [32]byte{9}, KeyProof: testKeyProof}})
	if !errors.Is(err, ErrNoGasFunds) || !strings.Contains(err.Error(), poorAddr.Hex()) {
		t.Fatalf("a transaction from an account with 1000 wei: %v, want ErrNoGasFunds naming %s", err, poorAddr.Hex())
	}

	// A reader without a key reads the same batches and registry, and is
	// refused every transaction before anything is signed.
	ro, err := DialReadOnly(ctx, url, c.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got, err := ro.Batch(ctx, want[0].ID); err != nil || !reflect.DeepEqual(withoutCommit(got), want[0]) {
		t.Fatalf("batch %d read-only: %+v, %v", want[0].ID, got, err)
	}
	if read, err := ro.TerminalChanges(ctx, 0); err != nil || len(read.Changes) != 1 {
		t.Fatalf("terminal changes read-only: %+v, %v", read.Changes, err)
	}
	b2, _ := testBatch(uint64(len(want)+1), 5, 2)
	if _, err := ro.CommitBatch(ctx, b2); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("commit over a read-only connection: %v, want ErrReadOnly", err)
	}
	if ro.KeyAccount() != nil {
		t.Fatal("a read-only connection has a key account")
	}
	if _, err := DialReadOnly(ctx, url, ""); err == nil {
		t.Fatal("DialReadOnly without a contract would deploy nothing, yet was accepted")
	}

	// Errors for bad arguments.
	if _, err := Dial(ctx, url, keyFile, "not-an-address"); err == nil {
		t.Fatal("Dial accepted a bad contract address")
	}
	if _, err := Dial(ctx, url, filepath.Join(t.TempDir(), "missing.key"), ""); err == nil {
		t.Fatal("Dial accepted a missing key file")
	}
}

// TestAdoptsDeployedContract: if a first start died after deploying but before
// recording the address, the next start finds the contract (the clearing
// house's first deployment) instead of deploying a second one.
func TestAdoptsDeployedContract(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	e := openTest(t, dir)
	addr := e.ContractAddress()
	b, _ := testBatch(1, 3, 2)
	if _, err := e.CommitBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if err := os.Remove(filepath.Join(dir, stateFileName)); err != nil {
		t.Fatal(err)
	}
	e2 := openTest(t, dir)
	if e2.ContractAddress() != addr {
		t.Fatalf("contract %s, want the existing %s", e2.ContractAddress(), addr)
	}
	if next, err := e2.NextBatchID(ctx); err != nil || next != 2 {
		t.Fatalf("NextBatchID = %d, %v; want 2", next, err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFileName)); err != nil {
		t.Fatalf("address not recorded again: %v", err)
	}
}

// withoutCommit is b without where it was committed (what CommitBatch
// takes, to compare with what was committed).
// checkCommittedAt checks that a batch read back says its block's time.
func checkCommittedAt(t *testing.T, e *Embedded, b Batch) {
	t.Helper()
	h, err := e.client.HeaderByNumber(context.Background(), new(big.Int).SetUint64(b.BlockNumber))
	if err != nil {
		t.Fatal(err)
	}
	if b.CommittedAt.IsZero() || b.CommittedAt.Unix() != int64(h.Time) || b.CommittedAt.Location() != time.UTC {
		t.Fatalf("batch %d read back committed at %s; its block %d's time is %s", b.ID, b.CommittedAt, b.BlockNumber, time.Unix(int64(h.Time), 0).UTC())
	}
}

func withoutCommit(b Batch) Batch {
	b.BlockNumber, b.TxHash, b.CommittedAt = 0, [32]byte{}, time.Time{}
	return b
}

// TestDialRefusesAnotherContractVersion: a contract deployed by a build
// from before key proofs, or before operators could be moved to a new
// account (their bytecodes kept in testdata), has other logs and
// calls; binding to it is refused with ErrContractVersion naming both
// versions, instead of reading no terminal at all and reverting every
// registration without a word of why (an outside test found both).
func TestDialRefusesAnotherContractVersion(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	key, keyFile := fundedKeyFile(t, e)
	v1, err := os.ReadFile("testdata/Settlement-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	// The v1 constructor takes the clearing house's address, as today's.
	old := deployCode(t, e, key, common.FromHex(strings.TrimSpace(string(v1))))
	c, err := Dial(ctx, e.HTTPEndpoint(), keyFile, old.Hex())
	if err == nil {
		c.Close()
		t.Fatal("bound to a contract of version 1")
	}
	if !errors.Is(err, ErrContractVersion) || !strings.Contains(err.Error(), "this build reads 2 and 3") {
		t.Fatalf("binding to a version 1 contract: %v, want ErrContractVersion naming the versions", err)
	}
	// Version 2 (key proofs, no replaceOperatorAccount; an earlier build's
	// deployment): bound and used as before, but for moving an operator,
	// which is refused naming the version (a recheck found a deployment
	// upgraded to version 3 could not open its chain at all).
	older := deployCode(t, e, key, common.FromHex(strings.TrimSpace(settlementV2)))
	c2, err := Dial(ctx, e.HTTPEndpoint(), keyFile, older.Hex())
	if err != nil {
		t.Fatalf("binding to a version 2 contract: %v", err)
	}
	defer c2.Close()
	if next, err := c2.NextBatchID(ctx); err != nil || next != 1 {
		t.Fatalf("reading the version 2 contract: %d, %v", next, err)
	}
	if _, err := c2.KeyAccount().ReplaceOperatorAccount(ctx, "metro", common.Address{1}); !errors.Is(err, ErrContractVersion) || !strings.Contains(err.Error(), "interface version 2, which cannot move an operator") {
		t.Fatalf("moving an operator on a version 2 contract: %v, want ErrContractVersion naming it", err)
	}
	// A version 2 look-alike is refused as any other.
	look := common.FromHex(strings.TrimSpace(settlementV2))
	look[len(look)-10] ^= 0xff
	fake2 := deployCode(t, e, key, look)
	if c, err := Dial(ctx, e.HTTPEndpoint(), keyFile, fake2.Hex()); err == nil {
		c.Close()
		t.Fatal("bound to a version 2 look-alike")
	} else if !errors.Is(err, ErrContractCode) {
		t.Fatalf("a version 2 look-alike: %v, want ErrContractCode", err)
	}
	// Today's contract on the same chain binds.
	c, err = Dial(ctx, e.HTTPEndpoint(), keyFile, e.ContractAddress().Hex())
	if err != nil {
		t.Fatalf("binding to the current contract: %v", err)
	}
	c.Close()
}

// TestDialRefusesALookAlikeContract: a contract that answers VERSION 3 but
// is not this build's Settlement (here the same code with one byte of its
// metadata changed: it answers every call as the real one does) is refused
// with ErrContractCode, since readers trust what the chain holds because of
// the code that wrote it; the real contract deployed by another admin (its
// immutable differs) binds.
func TestDialRefusesALookAlikeContract(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	key, keyFile := fundedKeyFile(t, e)
	deploy := func(code []byte) common.Address { return deployCode(t, e, key, code) }
	settlement := common.FromHex(settlementabi.SettlementMetaData.Bin)
	lookAlike := slices.Clone(settlement)
	lookAlike[len(lookAlike)-10] ^= 0xff // inside the runtime's metadata hash
	fake := deploy(lookAlike)
	c, err := Dial(ctx, e.HTTPEndpoint(), keyFile, fake.Hex())
	if err == nil {
		c.Close()
		t.Fatal("bound to a look-alike contract")
	}
	if !errors.Is(err, ErrContractCode) || !strings.Contains(err.Error(), fake.Hex()) {
		t.Fatalf("binding to a look-alike contract: %v, want ErrContractCode naming it", err)
	}
	// The same code deployed by another key: its admin differs, it binds.
	own := deploy(slices.Clone(settlement))
	c, err = Dial(ctx, e.HTTPEndpoint(), keyFile, own.Hex())
	if err != nil {
		t.Fatalf("binding to the Settlement contract another admin deployed: %v", err)
	}
	c.Close()
}

// deployCode deploys creation code signed by key, with key's address as
// the constructor's clearing house, and returns the contract's address.
func deployCode(t *testing.T, e *Embedded, key *ecdsa.PrivateKey, code []byte) common.Address {
	t.Helper()
	ctx := testContext(t)
	eth, err := ethclient.DialContext(ctx, e.HTTPEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer eth.Close()
	chainID, err := eth.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opts := bind.NewKeyedTransactor(key, chainID)
	opts.Context = ctx
	code = append(slices.Clip(code), common.LeftPadBytes(crypto.PubkeyToAddress(key.PublicKey).Bytes(), 32)...)
	addr, tx, err := bind.DeployContract(opts, code, eth, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bind.WaitMined(ctx, eth, tx.Hash()); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestSameRuntimeCode(t *testing.T) {
	// Init code, then the runtime: PUSH1 5, PUSH32 (an immutable), STOP and
	// one byte of metadata with its length.
	creation := append([]byte{0x60, 0x01, 0x60, 0x02, 0x60, 0x05, 0x7f}, make([]byte, 32)...)
	creation = append(creation, 0x00, 0xa1, 0x00, 0x01)
	runtime := creation[4:]
	filled := slices.Clone(runtime)
	filled[3+31] = 0x42 // the constructor filled the immutable
	for _, c := range []struct {
		name     string
		deployed []byte
		ok       bool
		at       int
	}{
		{"as compiled", runtime, true, 0},
		{"immutable filled", filled, true, 0},
		{"push data changed", append([]byte{0x60, 0x06}, filled[2:]...), false, 1},
		{"opcode changed", append([]byte{0x61}, filled[1:]...), false, 0},
		{"metadata changed", append(slices.Clone(filled[:len(filled)-3]), 0xa2, 0x00, 0x01), false, len(filled) - 3},
		{"empty", nil, false, 0},
	} {
		at, ok := sameRuntimeCode(c.deployed, creation)
		if ok != c.ok || at != c.at {
			t.Errorf("%s: got (%d, %v), want (%d, %v)", c.name, at, ok, c.at, c.ok)
		}
	}
}

// fundedKeyFile makes a key, funds its account from the clearing house and
// writes it as a key file, as Dial takes it.
func fundedKeyFile(t *testing.T, e *Embedded) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, _ := crypto.GenerateKey()
	if err := e.Fund(testContext(t), crypto.PubkeyToAddress(key.PublicKey), new(big.Int).Mul(big.NewInt(100), big.NewInt(params.Ether))); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "signer.key")
	if err := os.WriteFile(keyFile, []byte("0x"+hex.EncodeToString(crypto.FromECDSA(key))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return key, keyFile
}

// TestDialRedactsPassword: a node reached with basic auth in its URL (as
// hosted nodes are) is named in errors without its password (an outside
// review saw it printed in the clear, beside Go's own redacted copy).
func TestDialRedactsPassword(t *testing.T) {
	const rpcURL = "http://user:s3cret@127.0.0.1:1"
	ctx := context.Background()
	_, err := DialReadOnly(ctx, rpcURL, "0x0000000000000000000000000000000000000001")
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "user:xxxxx@127.0.0.1:1") {
		t.Fatalf("dial with a password: %v", err)
	}

}
